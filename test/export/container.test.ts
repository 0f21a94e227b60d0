/** The encrypted container on its own: sizes around chunk boundaries, and what each kind of damage is called. */
import { describe, expect, it } from "vitest";
import { ExportFileError, open, seal } from "../../src/export/container.ts";

const PASSPHRASE = "a container passphrase";

async function sealed(plain: Uint8Array, pieces = 3, chunkBytes = 64): Promise<Uint8Array> {
  async function* gen(): AsyncGenerator<Uint8Array> {
    const step = Math.ceil(plain.length / pieces) || 1;
    for (let i = 0; i < plain.length; i += step) yield plain.subarray(i, i + step);
  }
  const parts: Uint8Array[] = [];
  for await (const p of seal(gen(), PASSPHRASE, { iterations: 1000, chunkBytes })) parts.push(p);
  return new Uint8Array(await new Blob(parts as Uint8Array<ArrayBuffer>[]).arrayBuffer());
}

async function opened(file: Uint8Array, passphrase = PASSPHRASE): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of open(new Blob([file as Uint8Array<ArrayBuffer>]).stream(), passphrase)) parts.push(p);
  return new Uint8Array(await new Blob(parts as Uint8Array<ArrayBuffer>[]).arrayBuffer());
}

const chunkStarts = (file: Uint8Array): number[] => {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const starts: number[] = [];
  for (let at = 12 + view.getUint32(8) + 32; at < file.length; at += 4 + view.getUint32(at)) starts.push(at);
  return starts;
};

describe("export container", () => {
  it.each([0, 1, 63, 64, 65, 128, 1000])("round-trips %i bytes, one chunk per 64 bytes (an empty last chunk only when there is nothing at all)", async (n) => {
    const plain = Uint8Array.from({ length: n }, (_, i) => (i * 13) & 0xff);
    const file = await sealed(plain);
    expect(await opened(file)).toEqual(plain);
    expect(chunkStarts(file).length).toBe(Math.max(1, Math.ceil(n / 64)));
  });

  it("a file cut at any chunk boundary is truncated, not shorter", async () => {
    const file = await sealed(new Uint8Array(300).fill(7));
    for (const at of chunkStarts(file).slice(1)) {
      const err = await opened(file.subarray(0, at)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ExportFileError);
      expect((err as ExportFileError).message).toBe("the export file is truncated (it ends before its last chunk)");
    }
  });

  it("the last chunk cannot stand in for a middle one, nor a middle one end the file", async () => {
    const a = await sealed(new Uint8Array(200).fill(1));
    const s = chunkStarts(a);
    // Drop chunk 2 of 4: chunk 3 (the last) now sits at index 2.
    const dropped = new Uint8Array([...a.subarray(0, s[2]!), ...a.subarray(s[3]!)]);
    await expect(opened(dropped)).rejects.toThrow("chunk 2 fails its integrity check");
  });

  it("wrong passphrase is told apart from damage", async () => {
    const file = await sealed(new Uint8Array(10));
    await expect(opened(file, "another passphrase")).rejects.toThrow("wrong passphrase for this export file");
  });
});
