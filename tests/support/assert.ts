/**
 * A small assertion module in the shape of Deno std's `@std/assert`, which
 * cannot be resolved from JSR here (docs/decisions.md). Built on `node:assert`.
 *
 * @module
 */
import nodeAssert from "node:assert";
import { errorMessage } from "../../shared/errors.ts";

/** Throws unless `condition` is truthy. */
export function assert(condition: unknown, message = "Assertion failed"): asserts condition {
  if (!condition) throw new nodeAssert.AssertionError({ message });
}

/** Deep, strict equality (typed arrays compared by content). */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

/** Deep, strict inequality. */
export function assertNotEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, message);
}

/** `Object.is` equality. */
export function assertStrictEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.strictEqual(actual, expected, message);
}

/** Throws unless `actual` matches `pattern`. */
export function assertMatch(actual: string, pattern: RegExp, message?: string): void {
  nodeAssert.match(actual, pattern, message);
}

// deno-lint-ignore no-explicit-any
type ErrorClass<E extends Error> = new (...args: any[]) => E;

function checkError<E extends Error>(
  error: unknown,
  errorClass?: ErrorClass<E>,
  msgIncludes?: string,
): E {
  if (errorClass && !(error instanceof errorClass)) {
    const got = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    throw new nodeAssert.AssertionError({
      message: `Expected error to be instance of ${errorClass.name}, got ${got}`,
    });
  }
  if (msgIncludes !== undefined) {
    const message = errorMessage(error);
    if (!message.includes(msgIncludes)) {
      throw new nodeAssert.AssertionError({
        message: `Expected error message to include ${JSON.stringify(msgIncludes)}, got ${
          JSON.stringify(message)
        }`,
      });
    }
  }
  return error as E;
}

/** Calls `fn`, expects it to throw, checks the class and message; returns the error. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  errorClass?: ErrorClass<E>,
  msgIncludes?: string,
): E {
  try {
    fn();
  } catch (error) {
    return checkError(error, errorClass, msgIncludes);
  }
  throw new nodeAssert.AssertionError({ message: "Expected function to throw" });
}

/** Awaits `fn`, expects it to reject, checks the class and message; returns the error. */
export async function assertRejects<E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  errorClass?: ErrorClass<E>,
  msgIncludes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (error) {
    return checkError(error, errorClass, msgIncludes);
  }
  throw new nodeAssert.AssertionError({ message: "Expected promise to reject" });
}
