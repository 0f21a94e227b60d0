/** Server ACLs (`m.room.server_acl`): the matching rules, and the room EDUs a denied origin loses. */
import { afterEach, describe, expect, it } from "vitest";
import { aclAllows } from "../../src/homeserver/federation/acl.ts";
import { roomEdusAllowed } from "../../src/homeserver/federation/transactions.ts";
import type { Federation, FedServer } from "./harness.ts";
import { createFederation } from "./harness.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

describe("aclAllows (the m.room.server_acl schema's five steps)", () => {
  it("allows without an ACL; deny beats allow; no allow list denies everyone; globs, case and ports", () => {
    expect(aclAllows(undefined, "evil.com")).toBe(true);
    const acl = { allow: ["*"], deny: ["evil.com", "*.EVIL.org", "b?d.net"] };
    expect(aclAllows(acl, "good.com")).toBe(true);
    expect(aclAllows(acl, "evil.com")).toBe(false);
    expect(aclAllows(acl, "evil.com:8448")).toBe(false); // the port is not considered
    expect(aclAllows(acl, "sub.evil.org")).toBe(false);
    expect(aclAllows(acl, "evil.org")).toBe(true);
    expect(aclAllows(acl, "bad.net")).toBe(false);
    expect(aclAllows(acl, "baad.net")).toBe(true);
    expect(aclAllows({ deny: [] }, "good.com")).toBe(false); // allow defaults to []
    expect(aclAllows({ allow: ["*.example.com"] }, "example.com")).toBe(false);
    expect(aclAllows({ allow: ["*.example.com"] }, "a.example.com")).toBe(true);
  });

  it("IP literals are denied only when allow_ip_literals is false", () => {
    expect(aclAllows({ allow: ["*"] }, "1.2.3.4:8448")).toBe(true);
    expect(aclAllows({ allow: ["*"], allow_ip_literals: "no" }, "1.2.3.4")).toBe(true);
    expect(aclAllows({ allow: ["*"], allow_ip_literals: false }, "1.2.3.4:8448")).toBe(false);
    expect(aclAllows({ allow: ["*"], allow_ip_literals: false }, "[::1]:8448")).toBe(false);
    expect(aclAllows({ allow: ["*"], allow_ip_literals: false }, "example.com")).toBe(true);
  });
});

describe("room EDUs from an ACL-denied origin", () => {
  it("typing for the room and the room's receipts are dropped; other rooms' receipts and other EDUs kept", async () => {
    fed = await createFederation(["a.test"]);
    const [a] = fed.servers as [FedServer];
    const alice = await a.register("alice");
    const denied = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token)).body.room_id as string;
    const open = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token)).body.room_id as string;
    const acl = await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(denied)}/state/m.room.server_acl/`, { allow: ["*"], deny: ["evil.test"] }, alice.token);
    expect(acl.status).toBe(200);
    const edus = [
      { edu_type: "m.typing", content: { room_id: denied, user_id: "@m:evil.test", typing: true } },
      { edu_type: "m.typing", content: { room_id: open, user_id: "@m:evil.test", typing: true } },
      { edu_type: "m.receipt", content: { [denied]: { "m.read": {} }, [open]: { "m.read": {} } } },
      { edu_type: "m.presence", content: { push: [] } },
    ];
    const kept = await roomEdusAllowed(a.hs.services, "evil.test", edus);
    expect(kept).toEqual([edus[1], { edu_type: "m.receipt", content: { [open]: { "m.read": {} } } }, edus[3]]);
    expect(await roomEdusAllowed(a.hs.services, "good.test", edus)).toEqual(edus);
  });
});
