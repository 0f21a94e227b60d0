/** The room server: the stateful room layer other areas use (CONTRACTS.md, "[roomserver]"). */
export { sendEvent, txnKey } from "./send.ts";
export type { SendRequest, SendResult } from "./send.ts";
export { createRoom } from "./create.ts";
export { currentState, stateAfter, membershipOf, getRoom, getEvent, currentStateContent } from "./state.ts";
export { canSeeEvent, filterVisible } from "./visibility.ts";
export { EventServer } from "./serve.ts";
export type { Viewer } from "./serve.ts";
