/**
 * Answering ADDRESS_REQUEST capsules (RFC 9484 §4.7.2) at a bounded rate.
 *
 * A peer may send ADDRESS_REQUEST as often as it likes, and each one owes it
 * an ADDRESS_ASSIGN. Answered one by one, a flood of requests whose answers
 * the peer never reads queues answers without bound (the issue that led
 * here measured 5 million queued from 10k requests). So:
 * - while an answer is being written (not yet settled: it waits behind
 *   earlier writes or for the peer to read), further requests are merged,
 *   and the next answer covers every request id that came in meanwhile;
 * - answers are paced by a token bucket (a few per second, with a burst);
 * - when more than `maxPending` requested addresses wait for an answer, the
 *   caller is told to close the session.
 *
 * Each answer is the session's full assignment (RFC 9484 §4.7.1: an
 * ADDRESS_ASSIGN replaces the previous set, so an answer listing one IP
 * version only would withdraw the other), built by
 * {@linkcode buildAddressAnswer}.
 *
 * @module
 */

import type { AssignedAddress, Capsule, RequestedAddress } from "./capsule.ts";
import type { IpPrefix, IpVersion } from "../ip/ip_address.ts";
import { createPrefix } from "../ip/ip_address.ts";
import { TokenBucket } from "../rate_limit.ts";

/**
 * The Assigned Addresses of an ADDRESS_ASSIGN answering `requests`
 * (RFC 9484 §4.7.2) for a session assigned `assigned` (at most one prefix
 * per IP version). For each assigned prefix: one entry per request id of
 * its IP version, echoing that id, or one entry with request id 0 when none
 * asked for that version, so the answer lists the full assignment
 * (§4.7.1). A request for an IP version with no assigned prefix gets the
 * all-zero address with the full prefix length (`0.0.0.0/32`, `::/128`),
 * which §4.7.2 defines as "not assigned". The requested address and prefix
 * length themselves are not honoured: the assignment is fixed for the
 * session.
 */
export function buildAddressAnswer(
  assigned: readonly IpPrefix[],
  requests: readonly RequestedAddress[],
): AssignedAddress[] {
  const answer: AssignedAddress[] = [];
  for (const prefix of assigned) {
    let asked = false;
    for (const request of requests) {
      if (request.prefix.version !== prefix.version) continue;
      asked = true;
      answer.push({ requestId: request.requestId, prefix });
    }
    if (!asked) answer.push({ requestId: 0, prefix });
  }
  const versions = new Set<IpVersion>(assigned.map((prefix) => prefix.version));
  for (const request of requests) {
    if (versions.has(request.prefix.version)) continue;
    const bytes = request.prefix.version === 4 ? 4 : 16;
    answer.push({
      requestId: request.requestId,
      prefix: createPrefix(new Uint8Array(bytes), bytes * 8),
    });
  }
  return answer;
}

/** Options of {@linkcode AddressRequestAnswerer}. */
export interface AddressRequestAnswererOptions {
  /** The session's assigned prefixes (at most one per IP version). */
  readonly assigned: readonly IpPrefix[];
  /** Answers per second after the burst. */
  readonly ratePerSecond: number;
  /** Answers that may go out at once. */
  readonly burst: number;
  /** Requested addresses that may wait for an answer; more is an overflow. */
  readonly maxPending: number;
  /** Writes one capsule; settles when the write does. */
  send(capsule: Capsule): Promise<void>;
  /** The time, milliseconds (monotonic). */
  now(): number;
  /** Runs `fn` in `ms` milliseconds; returns a handle for `clearTimer`. */
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

/** What {@linkcode AddressRequestAnswerer.receive} made of a request. */
export type AddressRequestVerdict = "queued" | "overflow" | "closed";

/**
 * Answers one session's ADDRESS_REQUESTs: merged while an answer is in
 * flight, paced by a token bucket, bounded in what waits. See the module docs.
 */
export class AddressRequestAnswerer {
  readonly #options: AddressRequestAnswererOptions;
  readonly #bucket: TokenBucket;
  #pending: RequestedAddress[] = [];
  #assigned: readonly IpPrefix[];
  #inFlight = false;
  #timer: unknown = undefined;
  #closed = false;
  /** ADDRESS_ASSIGN answers written (or being written). */
  answersSent = 0;
  /** Requested addresses received. */
  requestsReceived = 0;

  constructor(options: AddressRequestAnswererOptions) {
    this.#options = options;
    this.#assigned = options.assigned;
    this.#bucket = new TokenBucket(
      { ratePerSecond: options.ratePerSecond, burst: options.burst },
      options.now(),
    );
  }

  /**
   * The session's assignment changed (the relay granted a requested
   * address): answers from now on list `assigned`.
   */
  reassign(assigned: readonly IpPrefix[]): void {
    this.#assigned = assigned;
  }

  /** Requested addresses waiting for an answer. */
  get pending(): number {
    return this.#pending.length;
  }

  /**
   * Takes the Requested Addresses of one ADDRESS_REQUEST. Returns
   * `"queued"` (answered now or with the next answer), `"overflow"` when
   * more than `maxPending` would wait (the answerer stops; the caller closes
   * the session), or `"closed"` after an overflow, a failed write or
   * {@linkcode close}.
   */
  receive(requests: readonly RequestedAddress[]): AddressRequestVerdict {
    if (this.#closed) return "closed";
    this.requestsReceived += requests.length;
    if (this.#pending.length + requests.length > this.#options.maxPending) {
      this.close();
      return "overflow";
    }
    this.#pending.push(...requests);
    this.#flush();
    return "queued";
  }

  /** Stops answering and cancels a pending timer. */
  close(): void {
    this.#closed = true;
    this.#pending = [];
    if (this.#timer !== undefined) this.#options.clearTimer(this.#timer);
    this.#timer = undefined;
  }

  #flush(): void {
    if (this.#closed || this.#inFlight || this.#timer !== undefined) return;
    if (this.#pending.length === 0) return;
    const now = this.#options.now();
    if (!this.#bucket.take(now)) {
      this.#timer = this.#options.setTimer(() => {
        this.#timer = undefined;
        this.#flush();
      }, this.#bucket.msUntilToken(now));
      return;
    }
    const batch = this.#pending;
    this.#pending = [];
    this.#inFlight = true;
    this.answersSent++;
    this.#options.send({
      type: "address_assign",
      addresses: buildAddressAnswer(this.#assigned, batch),
    }).then(
      () => {
        this.#inFlight = false;
        this.#flush();
      },
      () => {
        // The stream is gone; the session is ending.
        this.#inFlight = false;
        this.close();
      },
    );
  }
}
