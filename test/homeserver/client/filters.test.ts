import { describe, it, expect } from "vitest";
import { applyEventFields, eventPasses, roomAllowed, splitPath, validateFilter } from "../../../src/homeserver/services/filters.ts";
import type { RoomEventFilter } from "../../../src/homeserver/services/filters.ts";

const ev = (type: string, sender = "@a:x", content: Record<string, unknown> = {}) => ({ type, sender, content });

describe("event filters", () => {
  it.each<[string, RoomEventFilter, ReturnType<typeof ev>, boolean]>([
    ["no filter", {}, ev("m.room.message"), true],
    ["types exact", { types: ["m.room.message"] }, ev("m.room.message"), true],
    ["types miss", { types: ["m.room.topic"] }, ev("m.room.message"), false],
    ["types wildcard", { types: ["m.room.*"] }, ev("m.room.message"), true],
    ["types wildcard does not match other namespaces", { types: ["m.room.*"] }, ev("m.reaction"), false],
    ["not_types wins over types", { types: ["*"], not_types: ["m.room.message"] }, ev("m.room.message"), false],
    ["senders", { senders: ["@b:x"] }, ev("m.room.message", "@a:x"), false],
    ["not_senders", { not_senders: ["@a:x"] }, ev("m.room.message", "@a:x"), false],
    ["contains_url true", { contains_url: true }, ev("m.room.message", "@a:x", { url: "mxc://x/y" }), true],
    ["contains_url true, none", { contains_url: true }, ev("m.room.message"), false],
    ["contains_url false", { contains_url: false }, ev("m.room.message", "@a:x", { url: "mxc://x/y" }), false],
    ["dots are literal", { types: ["m.room.message"] }, ev("m_room_message"), false],
  ])("%s", (_name, filter, e, expected) => {
    expect(eventPasses(filter, e)).toBe(expected);
  });

  it("room lists: not_rooms wins", () => {
    expect(roomAllowed({ room: { rooms: ["!a:x"], not_rooms: ["!a:x"] } }, "!a:x")).toBe(false);
    expect(roomAllowed({ room: { rooms: ["!a:x"] } }, "!b:x")).toBe(false);
    expect(roomAllowed({}, "!b:x")).toBe(true);
    expect(eventPasses({ not_rooms: ["!r:x"] }, ev("m.room.message"), "!r:x")).toBe(false);
  });

  it("event_fields keep only the named paths, with escaped dots", () => {
    expect(splitPath("content.m\\.relates_to.rel_type")).toEqual(["content", "m.relates_to", "rel_type"]);
    expect(splitPath("a\\\\.b")).toEqual(["a\\", "b"]);
    const e = { type: "t", sender: "@a:x", content: { body: "hi", "m.relates_to": { rel_type: "m.thread", event_id: "$e" } }, event_id: "$x" };
    expect(applyEventFields(e, ["type", "content.m\\.relates_to.rel_type", "nope"])).toEqual({ type: "t", content: { "m.relates_to": { rel_type: "m.thread" } } });
    expect(applyEventFields(e, undefined)).toBe(e);
  });

  it("validation rejects malformed filters", () => {
    for (const bad of [[], { event_format: "xml" }, { event_fields: "type" }, { room: { timeline: { limit: -1 } } }, { room: { state: { lazy_load_members: "yes" } } }, { presence: { types: [1] } }, { room: { rooms: "!a:x" } }, { room: { include_leave: 1 } }]) {
      expect(() => validateFilter(bad), JSON.stringify(bad)).toThrow();
    }
    expect(validateFilter({ room: { timeline: { limit: 0, lazy_load_members: true } }, event_format: "federation" })).toBeTruthy();
  });
});
