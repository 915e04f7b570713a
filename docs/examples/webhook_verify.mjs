// Checking a Sluice webhook post's signature in Node.js (no packages):
//
//   import { verify } from "./webhook_verify.mjs";
//   const ok = verify(secret, req.headers["sluice-signature"], rawBody);
//
// `rawBody` must be the bytes as received (a Buffer), not re-serialized JSON.
// Run directly, it checks one header against a body:
//   node webhook_verify.mjs SECRET 't=...,v1=...' BODY [NOW]   # prints ok or refused
import { createHmac, timingSafeEqual } from "node:crypto";

const TOLERANCE = 300; // seconds

export function verify(secret, header, rawBody, now = Date.now() / 1000) {
  const fields = (header ?? "").split(",").map((p) => p.trim().split("="));
  const stamps = fields.filter(([k]) => k === "t").map(([, v]) => v);
  const signatures = fields.filter(([k]) => k === "v1").map(([, v]) => v);
  if (stamps.length !== 1 || !/^\d+$/.test(stamps[0]) || signatures.length === 0) {
    return false;
  }
  if (Math.abs(now - Number(stamps[0])) > TOLERANCE) return false;
  const expected = createHmac("sha256", secret)
    .update(`${stamps[0]}.`)
    .update(rawBody)
    .digest();
  return signatures.some((s) => {
    const given = Buffer.from(s, "hex");
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [secret, header, body, now] = process.argv.slice(2);
  const at = now === undefined ? Date.now() / 1000 : Number(now);
  console.log(verify(secret, header, Buffer.from(body ?? ""), at) ? "ok" : "refused");
}
