/** Defaults shared by the config loader and the embedded default, kept apart so the latter loads neither zod nor yaml. */

/** How long an operation under way stays its server's after the server's last sign of life (contract section 10). */
export const DEFAULT_LEASE_SECONDS = 30;
