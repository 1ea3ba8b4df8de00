/*
 * Wire types of the odin-dispatch client protocol (docs/protocol.md,
 * "Client protocol") and the events of OdinClient (docs/clients.md).
 */
export const RESUME_ERROR_CODES = [
    "TOO_FAR_BEHIND",
    "POSITION_EXPIRED",
    "INVALID_POSITION",
    "RESUME_UNAVAILABLE",
    "RESUME_BUSY",
    "RESUME_RATE_LIMITED",
];
