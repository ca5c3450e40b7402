-- spec/support/workers_job.lua: jobs that spec/workers_spec.lua runs in
-- worker threads by name ("workers_job.add"), loaded there by require.
local M = {}

function M.add(a, b) return a + b end

function M.fail(v) error(v, 0) end

M.not_a_function = 42

return M
