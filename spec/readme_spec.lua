-- The README's Lua examples, run as scripts: each must exit 0 and print
-- what its `print(...)  --> expected` comments say, in that order, so the
-- documentation cannot drift from the implementation.
local BIN = os.getenv("SLUICE_BIN") or "build/sluice"

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function words(s)
  return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
end

-- Runs a chunk of Lua as a script; returns its stdout lines and status.
local function run(code)
  local path, out = os.tmpname(), os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(code)
  f:close()
  local p = assert(io.popen("'" .. BIN .. "' " .. path .. " </dev/null >" .. out .. " 2>&1; echo $?"))
  local status = tonumber(p:read("*a"))
  p:close()
  local lines = {}
  for line in slurp(out):gmatch("[^\n]+") do lines[#lines + 1] = words(line) end
  os.remove(path)
  os.remove(out)
  return lines, status
end

local readme = slurp("README.md")
local n = 0
for block in readme:gmatch("```lua\n(.-)```") do
  n = n + 1
  local first = block:match("[^\n]*\n[^\n]*\n([^\n]*)") or ""
  it("example " .. n .. " runs as documented (" .. first .. ")", function()
    local expected = {}
    for line in block:gmatch("[^\n]+") do
      local e = line:match("print.*%-%->%s*(.-)%s*$")
      if e then expected[#expected + 1] = words(e) end
    end
    local lines, status = run(block)
    assert.are.equal(0, status, table.concat(lines, "\n"))
    -- every expected line appears, in order
    local at = 1
    for _, e in ipairs(expected) do
      while at <= #lines and lines[at] ~= e do at = at + 1 end
      assert(at <= #lines, "README example " .. n .. ": expected output line not found: " .. e ..
        "\ngot:\n" .. table.concat(lines, "\n"))
      at = at + 1
    end
  end)
end

it("the README has Lua examples", function()
  assert.is_true(n >= 10)
end)
