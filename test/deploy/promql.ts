/**
 * Rewrites every comparison of a PromQL expression to its `bool` form (`a > 0.1` → `a > bool 0.1`),
 * so that instead of filtering series out it returns every series with value 0 or 1. An alert
 * rule's expression rewritten this way returns data whenever the metrics it reads exist, firing
 * or not. Label matchers (`{a!="b"}`), range selectors and strings are left alone.
 */
export function withBool(expr: string): string {
  let out = '';
  let braces = 0;
  let brackets = 0;
  let quote: string | null = null;
  for (let i = 0; i < expr.length; i++) {
    const ch = expr[i];
    if (quote) {
      out += ch;
      if (ch === '\\') out += expr[++i] ?? '';
      else if (ch === quote) quote = null;
      continue;
    }
    if (ch === '"' || ch === "'" || ch === '`') quote = ch;
    else if (ch === '{') braces++;
    else if (ch === '}') braces--;
    else if (ch === '[') brackets++;
    else if (ch === ']') brackets--;
    if (braces === 0 && brackets === 0 && !quote) {
      const op = /^(==|!=|>=|<=|>|<)/.exec(expr.slice(i))?.[1];
      if (op) {
        out += op;
        i += op.length - 1;
        if (!/^\s*bool\b/.test(expr.slice(i + 1))) out += ' bool ';
        continue;
      }
    }
    out += ch;
  }
  return out;
}

/** Substitutes the dashboard's variables as Grafana would for one selected value of each. */
export function substitute(expr: string, vars: Record<string, string>): string {
  return expr.replace(/\$\{?(__rate_interval|__interval|__range|\w+)\}?/g, (m, name: string) => {
    if (!(name in vars)) throw new Error(`no value for ${m} in: ${expr}`);
    return vars[name];
  });
}
