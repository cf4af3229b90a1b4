/**
 * The version of masque-vpn, shown by `--version` on both programs and, in
 * time, in the status and metrics. Raised with each release.
 *
 * @module
 */

/** Semantic version of this tree (semver.org). */
export const VERSION = "0.1.0";
