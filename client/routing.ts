/**
 * Applies a routing plan (`shared/tunnel/full_tunnel.ts`) to the host
 * through `ffi/policy_routing.ts`: routes into the client's own table
 * first, then the rules that send traffic there; removal in the opposite
 * order. {@linkcode removeStaleRouting} clears what a client killed by
 * SIGKILL left, found by the plan's table and rule priorities.
 *
 * Not wired into `client/main.ts` yet (issue 14 continues after issue 9's
 * `Client` class).
 *
 * @module
 */

import { errorMessage } from "../shared/errors.ts";
import {
  addRule,
  addTableRoute,
  deleteRule,
  deleteRulesWhere,
  type FibRule,
  flushTable,
  LibcError,
  type TableRouteSpec,
} from "../ffi/policy_routing.ts";
import {
  type FullTunnelOptions,
  isPlannedRule,
  type PlannedRoute,
  type PlannedRule,
  type RoutingPlan,
} from "../shared/tunnel/full_tunnel.ts";

/** Routing installed by {@linkcode installRouting}. */
export interface InstalledRouting {
  /** The plan that was installed. */
  readonly plan: RoutingPlan;
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
  const added: FibRule[] = [];
  const installed: InstalledRouting = {
    plan,
    remove() {
      const problems: string[] = [];
      for (const rule of added.splice(0).reverse()) {
        try {
          deleteRule(rule);
        } catch (error) {
          if (!(error instanceof LibcError && error.code === "ENOENT")) {
            problems.push(errorMessage(error));
          }
        }
      }
      try {
        flushTable(plan.table);
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
