/**
 * Applies a routing plan (`shared/tunnel/full_tunnel.ts`) to the host
 * through `ffi/policy_routing.ts`: routes into the client's own table
 * first, then the rules that send traffic there; removal in the opposite
 * order. {@linkcode removeStaleRouting} clears what a client killed by
 * SIGKILL left, found by the plan's table and rule priorities.
 *
 * `client/main.ts` hands these to the `Client`, whose `TunnelHost`
 * installs the plan once the TUN is up, changes it in place when the
 * relay's routes, DNS servers or address change, and removes it at the end.
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import {
  addRule,
  addTableRoute,
  deleteRule,
  deleteRulesWhere,
  deleteTableRoute,
  type FibRule,
  flushTable,
  LibcError,
  type TableRouteSpec,
} from "../ffi/policy_routing.ts";
import {
  diffRoutingPlans,
  type FullTunnelOptions,
  isPlannedRule,
  type PlannedRoute,
  type PlannedRule,
  type RoutingPlan,
} from "../shared/tunnel/full_tunnel.ts";

/** Routing installed by {@linkcode installRouting}. */
export interface InstalledRouting {
  /** The plan in place now. */
  readonly plan: RoutingPlan;
  /**
   * Changes what is installed to `plan` (same table, priorities and mark):
   * adds what is new, then deletes what is gone, so that nothing goes
   * around the tunnel in between. Throws the first failure; what was
   * installed before stays.
   */
  update(plan: RoutingPlan): void;
  /**
   * Deletes the rules, then flushes the table. Keeps going past failures
   * and returns their messages (empty when everything was removed).
   */
  remove(): string[];
}

/** The FIB rule for a planned rule. */
export function toFibRule(rule: PlannedRule): FibRule {
  const { purpose: _purpose, ...fields } = rule;
  return fields;
}

/** The route to add for a planned route through `tunName`. */
export function toTableRoute(route: PlannedRoute, table: number, tunName: string): TableRouteSpec {
  return route.type === "tunnel"
    ? { destination: route.destination, table, type: "unicast", device: tunName }
    : { destination: route.destination, table, type: "unreachable" };
}

/**
 * Adds the plan's routes (through `tunName`, which must be up) and then its
 * rules. On a failure, removes what it added and throws the failure.
 */
export function installRouting(plan: RoutingPlan, tunName: string): InstalledRouting {
  let current = plan;
  const added: FibRule[] = [];
  const installed: InstalledRouting = {
    get plan() {
      return current;
    },
    update(next: RoutingPlan) {
      const change = diffRoutingPlans(current, next);
      for (const route of change.addRoutes) {
        addTableRoute(toTableRoute(route, next.table, tunName));
      }
      for (const planned of change.addRules) {
        const rule = toFibRule(planned);
        addRule(rule);
        added.push(rule);
      }
      const problems: string[] = [];
      for (const planned of change.deleteRules) {
        const rule = toFibRule(planned);
        const gone = ignoreMissing(() => deleteRule(rule), "ENOENT", problems);
        const index = added.findIndex((a) => sameRule(a, rule));
        if (gone && index >= 0) added.splice(index, 1);
      }
      for (const route of change.deleteRoutes) {
        ignoreMissing(
          () => deleteTableRoute(toTableRoute(route, current.table, tunName)),
          "ESRCH",
          problems,
        );
      }
      current = next;
      if (problems.length > 0) throw new Error(`Cannot change routing: ${problems.join("; ")}`);
    },
    remove() {
      const problems: string[] = [];
      for (const rule of added.splice(0).reverse()) {
        ignoreMissing(() => deleteRule(rule), "ENOENT", problems);
      }
      try {
        flushTable(current.table);
      } catch (error) {
        problems.push(errorMessage(error));
      }
      return problems;
    },
  };
  try {
    for (const route of plan.routes) addTableRoute(toTableRoute(route, plan.table, tunName));
    for (const planned of plan.rules) {
      const rule = toFibRule(planned);
      addRule(rule);
      added.push(rule);
    }
  } catch (error) {
    installed.remove();
    throw error;
  }
  return installed;
}

/** Runs `fn`; a LibcError with `code` (already gone) is fine, another failure is noted. */
function ignoreMissing(fn: () => void, code: string, problems: string[]): boolean {
  try {
    fn();
    return true;
  } catch (error) {
    if (error instanceof LibcError && error.code === code) return true;
    problems.push(errorMessage(error));
    return false;
  }
}

function sameRule(a: FibRule, b: FibRule): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What {@linkcode removeStaleRouting} found and removed. */
export interface StaleRouting {
  /** Rules in the plan's priority range that looked up the client's table or main. */
  readonly rules: readonly FibRule[];
  /** Routes flushed from the client's table. */
  readonly routes: number;
}

/**
 * Removes rules and routes that a client using the same table and
 * priorities left behind (killed by SIGKILL, say), so that a new start
 * installs onto a clean slate and does not fail with EEXIST.
 */
export function removeStaleRouting(
  options: Pick<FullTunnelOptions, "table" | "priority">,
): StaleRouting {
  const rules = deleteRulesWhere((rule) => isPlannedRule(rule, options));
  const routes = flushTable(options.table);
  return { rules, routes };
}
