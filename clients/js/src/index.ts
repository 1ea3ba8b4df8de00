export { OdinClient, backoffCeiling, backoffDelay, buildResumeMessage, isValidChannel } from "./client.js";
export * from "./types.js";
