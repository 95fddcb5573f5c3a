// One small line icon per kind of device, drawn inline (no file fetched from anywhere).
// Decorative: the card says the kind in words too.

const SVG = "http://www.w3.org/2000/svg";

export const TYPE_WORDS = {
  desktop: "Computer",
  phone: "Phone",
  tablet: "Tablet",
  terminal: "Terminal",
  unknown: "",
};

// 24x24 outlines: [tag, attributes] each.
const SHAPES = {
  desktop: [
    ["rect", { x: 3, y: 4, width: 18, height: 12, rx: 1.5 }],
    ["path", { d: "M8 20h8M12 16v4" }],
  ],
  phone: [
    ["rect", { x: 7, y: 2.5, width: 10, height: 19, rx: 2 }],
    ["path", { d: "M11 18.5h2" }],
  ],
  tablet: [
    ["rect", { x: 4, y: 3, width: 16, height: 18, rx: 2 }],
    ["path", { d: "M11 18h2" }],
  ],
  terminal: [
    ["rect", { x: 2.5, y: 4, width: 19, height: 16, rx: 1.5 }],
    ["path", { d: "M6.5 9.5 9.5 12l-3 2.5M12 15h5" }],
  ],
  unknown: [
    ["circle", { cx: 12, cy: 12, r: 9 }],
    ["path", { d: "M9.6 9.5a2.5 2.5 0 1 1 3.4 2.3c-.7.3-1 .8-1 1.5v.5M12 16.8v.2" }],
  ],
};

/** The icon of `type` (desktop, phone, tablet, terminal, unknown), as an <svg>. */
export function deviceIcon(type) {
  const svg = document.createElementNS(SVG, "svg");
  for (const [name, value] of Object.entries({
    viewBox: "0 0 24 24", width: 28, height: 28, fill: "none", stroke: "currentColor",
    "stroke-width": 1.6, "stroke-linecap": "round", "stroke-linejoin": "round",
    "aria-hidden": "true", focusable: "false",
  })) {
    svg.setAttribute(name, String(value));
  }
  for (const [tag, attributes] of SHAPES[type] ?? SHAPES.unknown) {
    const shape = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) shape.setAttribute(name, String(value));
    svg.append(shape);
  }
  return svg;
}
