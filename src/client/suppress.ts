// `mailroom suppress add|remove|get ADDR`, `mailroom suppress list`: the
// suppression list by hand (a token marked admin in AUTH_TOKENS_FILE, or
// none on a loopback service). list prints every page, one JSON line each
// entry, addresses masked as the service answers them.
import type { SuppressionServiceClient } from '../generated/mail/SuppressionService.js';
import type { ListSuppressionsResponse__Output } from '../generated/mail/ListSuppressionsResponse.js';
import { UsageError, type CallUnary } from './io.js';

const PAGE = 500;

export async function suppress(client: SuppressionServiceClient, args: readonly string[], call: CallUnary, out: (value: unknown) => void, line: (value: unknown) => void): Promise<number> {
  const [sub, address, ...rest] = args;
  if (rest.length > 0) throw new UsageError(`suppress: unexpected ${JSON.stringify(rest.join(' '))}`);
  if (sub === 'list') {
    if (address !== undefined) throw new UsageError('suppress list: takes no address');
    let token = '';
    do {
      const page = await call<{ page_size: number; page_token: string }, ListSuppressionsResponse__Output>(client.ListSuppressions.bind(client), { page_size: PAGE, page_token: token });
      for (const s of page.suppressions) line(s);
      token = page.next_page_token;
    } while (token !== '');
    return 0;
  }
  if (address === undefined || address === '') throw new UsageError(`suppress ${sub ?? ''}: give an ADDRESS`);
  switch (sub) {
    case 'add':
      out(await call(client.AddSuppression.bind(client), { address, reason: 'SUPPRESSION_REASON_MANUAL' }));
      return 0;
    case 'remove':
      out(await call(client.RemoveSuppression.bind(client), { address }));
      return 0;
    case 'get':
      out(await call(client.GetSuppression.bind(client), { address }));
      return 0;
    default:
      throw new UsageError('suppress: add ADDRESS, remove ADDRESS, get ADDRESS or list');
  }
}
