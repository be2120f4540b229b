/**
 * The one function that quotes an argument for a POSIX shell: everything that crosses into a
 * remote shell passes through it. Single quotes make every byte literal; an embedded single
 * quote is closed, escaped and reopened.
 */
export function shellQuote(argument: string): string {
  if (argument.includes('\0')) throw new Error('a command argument cannot contain a NUL byte');
  if (/^[A-Za-z0-9_/.,:=@%+-]+$/.test(argument)) return argument;
  return `'${argument.replace(/'/g, `'\\''`)}'`;
}

export function shellCommand(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}
