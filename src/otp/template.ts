// The code mail's subject, text and html, from templates with {{code}},
// {{minutes}} and {{seconds}}. Templates are checked once at boot
// (templateProblems) so a typo stops boot instead of reaching a user.
const PLACEHOLDER = /\{\{\s*([A-Za-z_]+)\s*\}\}/g;
const KNOWN = new Set(['code', 'minutes', 'seconds']);

export interface CodeTemplates {
  readonly subject: string;
  readonly text: string;
  /** '' for a text-only mail */
  readonly html: string;
}

export interface CodeMail {
  readonly subject: string;
  readonly text: string;
  readonly html: string;
}

/** Env files cannot hold line breaks easily: a literal backslash-n in a value means one. */
export function unescapeNewlines(value: string): string {
  return value.replace(/\\r\\n|\\n/g, '\n');
}

export function templateProblems(name: string, template: string): string[] {
  const problems: string[] = [];
  for (const m of template.matchAll(PLACEHOLDER)) {
    if (!KNOWN.has(m[1] as string)) problems.push(`${name}: unknown placeholder ${m[0]}; expected {{code}}, {{minutes}} or {{seconds}}`);
  }
  return problems;
}

export function hasCodePlaceholder(template: string): boolean {
  for (const m of template.matchAll(PLACEHOLDER)) if (m[1] === 'code') return true;
  return false;
}

function fill(template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(PLACEHOLDER, (whole, name: string) => values[name] ?? whole);
}

export function renderCodeMail(templates: CodeTemplates, code: string, lifespanMs: number): CodeMail {
  const seconds = Math.round(lifespanMs / 1000);
  const values = { code, seconds: String(seconds), minutes: String(Math.max(1, Math.ceil(seconds / 60))) };
  return {
    subject: fill(templates.subject, values),
    text: fill(templates.text, values),
    html: templates.html === '' ? '' : fill(templates.html, values),
  };
}
