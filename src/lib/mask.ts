// Addresses masked by their structure, for whatever leaves the process or
// outlives a message: the inspector, and the relay replies a status record
// keeps (a 550 often quotes the recipient).
/** what ends a word that may hold an address: white space, and what brackets or separates addresses in mail and logs */
const DELIMITER = /[\s<>,;()[\]]/;

/**
 * Every word with an @ in it is an address, whatever its local part holds
 * (RFC 5321 allows {, |, !, ', #, quoted strings): split at its last @, its
 * local part keeps its first character only. A quoted part ("john doe")
 * belongs to the word it is in, spaces and all; an unclosed quote runs to
 * the end, and is masked with it.
 */
export function maskAddresses(s: string): string {
  let out = '';
  let word = '';
  const flush = (): void => {
    const at = word.lastIndexOf('@');
    out += at <= 0 ? word : `${word.slice(0, 1)}***${word.slice(at)}`;
    word = '';
  };
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (c === '"') {
      let j = i + 1;
      while (j < s.length && s[j] !== '"') j += s[j] === '\\' ? 2 : 1;
      word += s.slice(i, j + 1);
      i = j;
    } else if (DELIMITER.test(c)) {
      flush();
      out += c;
    } else {
      word += c;
    }
  }
  flush();
  return out;
}
