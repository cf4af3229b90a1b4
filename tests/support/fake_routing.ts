/**
 * Policy routing that installs nothing, for tests whose Client runs on an
 * in-memory TUN and does not look at the routing
 * (`tests/integration/client_test.ts` has a recording one).
 *
 * @module
 */

import type { ClientRouting, InstalledPlan } from "../../client/client.ts";
import type { RoutingPlan } from "../../shared/tunnel/full_tunnel.ts";

/** A `ClientRouting` that keeps the plan it is given and touches no host. */
export function noRouting(): ClientRouting {
  return {
    removeStale: () => ({ rules: [], routes: 0 }),
    install(plan: RoutingPlan): InstalledPlan {
      let current = plan;
      return {
        get plan() {
          return current;
        },
        update(next) {
          current = next;
        },
        remove: () => [],
      };
    },
  };
}
