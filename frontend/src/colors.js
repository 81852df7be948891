// Role colours: families share a hue; unresolved roles stand out in red.
const FAMILY = {
  dense: "#1e88e5",
  conv: "#43a047",
  conv_transpose: "#2e7d32",
  depthwise: "#7cb342",
  separable: "#558b2f",
  bn: "#8e24aa",
  ln: "#00897b",
  embedding: "#6d4c41",
  lstm: "#d81b60",
  gru: "#c2185b",
  custom: "#546e7a",
  constant: "#90a4ae",
  ignore: "#cfd8dc",
};
export const UNRESOLVED = "#e53935";

export function roleColor(role) {
  if (!role) return UNRESOLVED;
  return FAMILY[role.split(".")[0]] || "#5c6bc0";
}

export const STATUS_COLOR = { OK: "#43a047", INACCURATE: "#fb8c00", FAILED: "#e53935" };
