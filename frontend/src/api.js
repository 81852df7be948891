// Data access: every request the panel makes goes through here (relative URLs).
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function call(path, opts = {}) {
  const res = await fetch(path, opts);
  let body = null;
  const text = await res.text();
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = { error: text.slice(0, 300) };
  }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

const q = (params) =>
  Object.entries(params)
    .filter(([, v]) => v != null)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join("&");

const write = (method, body) => ({
  method,
  headers: { "Content-Type": "application/json", "X-VarMap-Request": "1" },
  body: JSON.stringify(body || {}),
});

export const api = {
  runs: () => call("./runs"),
  graph: (run) => call(`./graph?${q({ run })}`),
  variables: (run, step) => call(`./variables?${q({ run, step })}`),
  tags: (run) => call(`./tags?${q({ run })}`),
  putTags: (run, body) => call(`./tags?${q({ run })}`, write("PUT", body)),
  exportRun: (run, body) => call(`./export?${q({ run })}`, write("POST", body)),
  job: (id) => call(`./jobs/${encodeURIComponent(id)}`),
  report: (run) => call(`./report?${q({ run })}`),
};
