/**
 * One registry of named counters and gauges for a process (the relay, the
 * client): the status file is a {@linkcode CounterRegistry.snapshot} of it,
 * and Prometheus metrics are another rendering of the same families
 * ({@linkcode CounterRegistry.families}, with name, help, kind and labelled
 * samples), so there is one source for both.
 *
 * - A family has a name in Prometheus style (`tunnel_packets_dropped_total`:
 *   snake_case, a unit, `_total` on counters), help text, and labels.
 * - Labels are bounded: each label either declares its values up front
 *   (drop reasons, directions), and a child for every combination exists
 *   from the start, or has a cap on how many values it takes (a later
 *   `user` label), past which values count under {@linkcode OTHER}. No
 *   label value ever comes from peer input without one of the two.
 * - Hot paths resolve their {@linkcode Counter} once (at construction) and
 *   then bump `counter.value`: a property increment, no lookup and no
 *   string building per packet.
 * - A family may instead be read when a snapshot is taken (`collect`), for
 *   values another object keeps (the TUN device's counters, gauges such as
 *   open sessions).
 *
 * Registering a name again returns the same family when its kind and labels
 * match (every connection of a relay adds to the same counters), and throws
 * otherwise.
 *
 * @module
 */

/** One counter or gauge value. Hot paths do `counter.value++` (or `+= n`). */
export class Counter {
  value = 0;
}

/** The label value under which a capped label counts the values past its cap. */
export const OTHER = "other";

/**
 * A label of a family: its values declared up front, or any values up to
 * `cap` distinct ones (then {@linkcode OTHER}).
 */
export type LabelSpec =
  | { readonly name: string; readonly values: readonly string[] }
  | { readonly name: string; readonly cap: number };

/** Whether a family only grows (counter) or goes up and down (gauge). */
export type CounterKind = "counter" | "gauge";

/**
 * What a collected family reads at snapshot time: a number, or for a
 * family with one label a record of label value to number.
 */
export type Collect = () => number | Readonly<Record<string, number>>;

/** Options of {@linkcode CounterRegistry.counter} and {@linkcode CounterRegistry.gauge}. */
export interface FamilyOptions {
  /** One line saying what is counted, with the unit. */
  readonly help: string;
  /** The labels, outermost first (default none). */
  readonly labels?: readonly LabelSpec[];
  /**
   * Read the value when a snapshot is taken instead of keeping children
   * (at most one label, with declared values).
   */
  readonly collect?: Collect;
}

/** A snapshot value: a number, or per label value a nested snapshot value. */
export type SnapshotValue = number | { readonly [labelValue: string]: SnapshotValue };

/** One labelled value of a family: the label values (in label order) and the number. */
export interface Sample {
  readonly labels: readonly string[];
  readonly value: number;
}

const SEPARATOR = "\u0000";

/** A named family of counters or gauges; see the module docs. */
export class CounterFamily {
  readonly name: string;
  readonly help: string;
  readonly kind: CounterKind;
  readonly labels: readonly LabelSpec[];
  readonly #collect: Collect | undefined;
  /** Label values joined with NUL -> child, in creation order. */
  readonly #children = new Map<string, { labels: readonly string[]; counter: Counter }>();
  /** For each capped label, the values seen so far. */
  readonly #seen: (Set<string> | undefined)[];

  constructor(name: string, kind: CounterKind, options: FamilyOptions) {
    if (!isMetricName(name)) {
      throw new Error(`Cannot register counter "${name}": not a metric name`);
    }
    const labels = options.labels ?? [];
    for (const label of labels) {
      if (!isMetricName(label.name) || label.name.startsWith("__")) {
        throw new Error(
          `Cannot register counter ${name}: label "${label.name}" is not a label name`,
        );
      }
      if ("cap" in label && !(Number.isSafeInteger(label.cap) && label.cap > 0)) {
        throw new Error(`Cannot register counter ${name}: label ${label.name} needs a cap above 0`);
      }
    }
    if (options.collect !== undefined && (labels.length > 1 || labels.some((l) => "cap" in l))) {
      throw new Error(
        `Cannot register counter ${name}: a collected family has at most one declared label`,
      );
    }
    this.name = name;
    this.kind = kind;
    this.help = options.help;
    this.labels = labels;
    this.#collect = options.collect;
    this.#seen = labels.map((label) => ("cap" in label ? new Set<string>() : undefined));
    if (this.#collect === undefined && labels.every((label) => "values" in label)) {
      // Every combination exists from the start, so snapshots list zeros too.
      const combinations = labels.reduce<string[][]>(
        (sets, label) =>
          sets.flatMap((set) =>
            (label as { values: readonly string[] }).values.map((v) => [...set, v])
          ),
        [[]],
      );
      for (const values of combinations) this.#create(values);
    }
  }

  /** Whether this family is read at snapshot time. */
  get collected(): boolean {
    return this.#collect !== undefined;
  }

  /**
   * The child for `values` (one per label, in order), to keep and bump.
   * Throws for a wrong number of values or a value a declared label does
   * not have (a bug in the caller, never peer input); a capped label past
   * its cap gives the {@linkcode OTHER} child.
   */
  child(...values: string[]): Counter {
    if (this.#collect !== undefined) {
      throw new Error(`Cannot count ${this.name} directly: its values are collected`);
    }
    if (values.length !== this.labels.length) {
      throw new Error(
        `Cannot count ${this.name}: ${values.length} label values for ${this.labels.length} labels`,
      );
    }
    const resolved = values.map((value, i) => this.#labelValue(i, value));
    const existing = this.#children.get(resolved.join(SEPARATOR));
    return existing?.counter ?? this.#create(resolved);
  }

  #labelValue(index: number, value: string): string {
    const label = this.labels[index];
    if ("values" in label) {
      if (!label.values.includes(value)) {
        throw new Error(`Cannot count ${this.name}: label ${label.name} has no value "${value}"`);
      }
      return value;
    }
    const seen = this.#seen[index]!;
    if (seen.has(value)) return value;
    if (seen.size >= label.cap) return OTHER;
    seen.add(value);
    return value;
  }

  #create(values: readonly string[]): Counter {
    const counter = new Counter();
    this.#children.set(values.join(SEPARATOR), { labels: values, counter });
    return counter;
  }

  /** Every value of the family now: its children, or what `collect` reads. */
  samples(): Sample[] {
    if (this.#collect === undefined) {
      return [...this.#children.values()].map((c) => ({
        labels: c.labels,
        value: c.counter.value,
      }));
    }
    const read = this.#collect();
    if (typeof read === "number") return [{ labels: [], value: read }];
    return Object.entries(read).map(([label, value]) => ({ labels: [label], value }));
  }

  /** The family's value as the status file shows it: a number, or nested by label value. */
  snapshot(): SnapshotValue {
    if (this.labels.length === 0 && this.#collect === undefined) {
      return this.#children.get("")?.counter.value ?? 0;
    }
    const samples = this.samples();
    if (this.labels.length === 0) return samples[0]?.value ?? 0;
    const root: Record<string, SnapshotValue> = {};
    for (const { labels, value } of samples) {
      let node = root;
      for (let i = 0; i < labels.length - 1; i++) {
        node = (node[labels[i]] ??= {}) as Record<string, SnapshotValue>;
      }
      node[labels[labels.length - 1]] = value;
    }
    return root;
  }
}

/**
 * A counter family with one declared label, registered in `registry`, and
 * its child for each value: `counterByLabel(r, "x_total", "Xs", "direction",
 * ["in", "out"]).in.value++`.
 */
export function counterByLabel<V extends string>(
  registry: CounterRegistry,
  name: string,
  help: string,
  label: string,
  values: readonly V[],
): Readonly<Record<V, Counter>> {
  const family = registry.counter(name, { help, labels: [{ name: label, values }] });
  return Object.fromEntries(values.map((value) => [value, family.child(value)])) as Record<
    V,
    Counter
  >;
}

/**
 * A histogram without labels (Prometheus style): observations counted in
 * cumulative buckets by upper bound, with their count and sum. Observing is
 * a walk over the bounds and three increments; for rare events (a session
 * setup), not per packet.
 */
export class HistogramFamily {
  readonly name: string;
  readonly help: string;
  readonly kind = "histogram" as const;
  readonly labels: readonly LabelSpec[] = [];
  /** Upper bounds of the buckets, ascending; `+Inf` is implied. */
  readonly bounds: readonly number[];
  /** Observations at or below each bound (not cumulative; see {@linkcode buckets}). */
  readonly #counts: number[];
  count = 0;
  sum = 0;

  constructor(name: string, help: string, bounds: readonly number[]) {
    if (!isMetricName(name)) {
      throw new Error(`Cannot register histogram "${name}": not a metric name`);
    }
    if (bounds.length === 0 || bounds.some((b, i) => !Number.isFinite(b) || b <= bounds[i - 1])) {
      throw new Error(`Cannot register histogram ${name}: bounds must be finite and ascending`);
    }
    this.name = name;
    this.help = help;
    this.bounds = Object.freeze([...bounds]);
    this.#counts = bounds.map(() => 0);
  }

  /** Counts one observation of `value` (in the family's unit). */
  observe(value: number): void {
    this.count++;
    this.sum += value;
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= this.bounds[i]) {
        this.#counts[i]++;
        return;
      }
    }
  }

  /** The cumulative count at or below each bound, then `+Inf` (all). */
  buckets(): { readonly le: string; readonly count: number }[] {
    let total = 0;
    const out = this.bounds.map((bound, i) => {
      total += this.#counts[i];
      return { le: String(bound), count: total };
    });
    out.push({ le: "+Inf", count: this.count });
    return out;
  }

  /** `{ count, sum, buckets: { "0.01": n, ..., "+Inf": n } }` for the status file. */
  snapshot(): SnapshotValue {
    return {
      count: this.count,
      sum: this.sum,
      buckets: Object.fromEntries(this.buckets().map((b) => [b.le, b.count])),
    };
  }
}

/** A registered family: counters and gauges, or a histogram. */
export type Family = CounterFamily | HistogramFamily;

/** A process's counters and gauges; see the module docs. */
export class CounterRegistry {
  readonly #families = new Map<string, Family>();

  /** A family that only grows; registering the same name and labels again returns it. */
  counter(name: string, options: FamilyOptions): CounterFamily {
    return this.#register(name, "counter", options);
  }

  /** A family that goes up and down (usually collected); see {@linkcode counter}. */
  gauge(name: string, options: FamilyOptions): CounterFamily {
    return this.#register(name, "gauge", options);
  }

  /**
   * A histogram with these bucket bounds (ascending, in the unit its name
   * ends with: `_seconds`); registering it again with the same bounds
   * returns it.
   */
  histogram(name: string, options: { help: string; buckets: readonly number[] }): HistogramFamily {
    const existing = this.#families.get(name);
    if (existing === undefined) {
      const family = new HistogramFamily(name, options.help, options.buckets);
      this.#families.set(name, family);
      return family;
    }
    if (
      !(existing instanceof HistogramFamily) ||
      existing.bounds.length !== options.buckets.length ||
      existing.bounds.some((b, i) => b !== options.buckets[i])
    ) {
      throw new Error(`Cannot register counter ${name}: registered already with another shape`);
    }
    return existing;
  }

  #register(name: string, kind: CounterKind, options: FamilyOptions): CounterFamily {
    const existing = this.#families.get(name);
    if (existing instanceof HistogramFamily) {
      throw new Error(`Cannot register counter ${name}: registered already with another shape`);
    }
    if (existing === undefined) {
      const family = new CounterFamily(name, kind, options);
      this.#families.set(name, family);
      return family;
    }
    if (
      existing.kind !== kind || existing.collected || options.collect !== undefined ||
      !sameLabels(existing.labels, options.labels ?? [])
    ) {
      throw new Error(`Cannot register counter ${name}: registered already with another shape`);
    }
    return existing;
  }

  /** The family named `name`, if registered. */
  family(name: string): Family | undefined {
    return this.#families.get(name);
  }

  /** Every family, in registration order (for a metrics rendering). */
  families(): IterableIterator<Family> {
    return this.#families.values();
  }

  /**
   * The value of `name` for `labels` (one value per label, in order, or a
   * leading part of them: the sum below), 0 when that child was never
   * counted. Throws when no family has that name.
   */
  value(name: string, ...labels: string[]): number {
    const family = this.#families.get(name);
    if (family === undefined) throw new Error(`Cannot read counter ${name}: not registered`);
    let node: SnapshotValue | undefined = family.snapshot();
    for (const label of labels) {
      node = typeof node === "object" ? node[label] : undefined;
    }
    return node === undefined ? 0 : sum(node);
  }

  /**
   * Every family's value, keyed by name, for JSON (the status file): a
   * number, or nested objects keyed by label values in label order, e.g.
   * `{ "tunnel_packets_total": { "outbound": 10, "inbound": 12 } }`.
   */
  snapshot(): Record<string, SnapshotValue> {
    const out: Record<string, SnapshotValue> = {};
    for (const [name, family] of this.#families) out[name] = family.snapshot();
    return out;
  }
}

function sum(value: SnapshotValue): number {
  if (typeof value === "number") return value;
  let total = 0;
  for (const child of Object.values(value)) total += sum(child);
  return total;
}

function sameLabels(a: readonly LabelSpec[], b: readonly LabelSpec[]): boolean {
  return a.length === b.length && a.every((label, i) => {
    const other = b[i];
    if (label.name !== other.name) return false;
    if ("cap" in label) return "cap" in other && other.cap === label.cap;
    return "values" in other && other.values.length === label.values.length &&
      label.values.every((v, j) => other.values[j] === v);
  });
}

/** Whether `name` is a Prometheus metric or label name: `[a-zA-Z_][a-zA-Z0-9_]*`. */
function isMetricName(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const letter = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f;
    if (!letter && !(i > 0 && c >= 0x30 && c <= 0x39)) return false;
  }
  return true;
}
