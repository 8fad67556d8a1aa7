/** Message schemas shared by the core tour and its worker. */
import { array, defineMessage, struct } from "../mod.ts";

/** A temperature reading from one sensor. */
export const Reading = defineMessage({
  typeId: 10,
  name: "Reading",
  fields: { sensor: "u32", seq: "u32", celsius: "f32", ok: "bool" },
});

/** A particle with a nested vector and a fixed-size history. */
export const Particle = defineMessage({
  typeId: 11,
  name: "Particle",
  fields: {
    id: "u64",
    pos: struct({ x: "f32", y: "f32", z: "f32" }, { name: "Vec3" }),
    history: array("u16", 3),
    alive: "bool",
  },
});
