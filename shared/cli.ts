/**
 * What the client's and the relay's option parsers share: the result type
 * and the parsers of integer and prefix options. Pure: the `main.ts` files
 * read `Deno.args` and the environment and hand them in.
 *
 * @module
 */

import { errorMessage } from "./errors.ts";
import { type IpPrefix, parsePrefix } from "./ip/ip_address.ts";

/** The outcome of a program's option parser: a frozen config, the errors, or `--help`. */
export type ParseResult<T> =
  | { readonly ok: true; readonly config: T }
  | { readonly ok: false; readonly errors: readonly string[] }
  | { readonly ok: "help" };

/** Parses a decimal integer within bounds, or records an error. */
export function parseInteger(
  text: string,
  name: string,
  min: number,
  max: number,
  errors: string[],
): number | undefined {
  const value = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) {
    errors.push(`${name} must be an integer from ${min} to ${max}, not "${text}"`);
    return undefined;
  }
  return value;
}

/** Parses a prefix, optionally of one IP version, or records an error. */
export function parseCidr(
  text: string,
  name: string,
  errors: string[],
  version?: 4 | 6,
): IpPrefix | undefined {
  try {
    const prefix = parsePrefix(text.trim());
    if (version !== undefined && prefix.version !== version) {
      errors.push(`${name} must be an IPv${version} prefix, not "${text}"`);
      return undefined;
    }
    return prefix;
  } catch (error) {
    errors.push(`${name}: ${errorMessage(error)}`);
    return undefined;
  }
}
