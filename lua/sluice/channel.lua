-- sluice.channel(capacity), sluice.select(cases): the Lua face of
-- lib/sl_chan.c; sluice.imap(source, fn, opts): a parallel map over any
-- source with bounded look-ahead, built on channels.
--
-- A channel object is a table holding the C state machine (_c) and the
-- values in flight (_v, indexed by the keys C hands out: see
-- lib/sl_chan.c).  Values never move in Lua: the sender writes a value
-- once under the key C gives it and the receiver C hands that key to
-- reads it once, so nothing is lost or duplicated by timeouts,
-- cancellation or close.  nil cannot be sent (recv answers nil only for
-- "closed" and "timeout"); false can.
--
--   ch:send(v [, timeout])  -> true | nil, "timeout"; raises "closed"
--   ch:recv([timeout])      -> v | nil, "closed" | nil, "timeout"
--   ch:try_send(v)          -> true | false (full); raises "closed"
--   ch:try_recv()           -> v | nil, "empty" | nil, "closed"
--   ch:close()              wakes every waiter; idempotent
--   for v in ch:iter() do   ends once closed and drained
--   ch.capacity, ch.count, ch.closed, ch.waiting_senders, ch.waiting_receivers
--
-- A send is complete once its value is buffered or with a receiver: a
-- sender cancelled after that still returns true (the cancellation
-- takes effect at its next blocking call).  A receiver handed a value
-- but cancelled before it ran passes the value on to the next receiver
-- or back to the front of the buffer.
--
-- Stats: ch:stats() -> { capacity, count, closed, send = {...},
-- recv = {...} }, each side as semaphore:stats() (acquired: values that
-- went through; waited, timeouts, cancelled, wait times, histogram).
local ffi = require "ffi"
local sffi = require "sluice.ffi"

local C, fail, timeout_arg = sffi.C, sffi.fail, sffi.timeout_arg
local type, pcall, error, tostring, setmetatable, getmetatable =
      type, pcall, error, tostring, setmetatable, getmetatable
local floor, fmt, min, max = math.floor, string.format, math.min, math.max

local CLOSED, TIMEDOUT = -8, -7
local WAKE_OK, WAKE_TIMEOUT, WAKE_CANCEL = 0, 1, 2

return function(M, I)
  local raise, describe, raise_cancelled = I.raise, I.describe, I.raise_cancelled
  local co_isyieldable, co_yield, PARK = I.co_isyieldable, I.co_yield, I.PARK
  local check_function = I.check_function
  local MAX = C.sl_chan_max()

  local Chan = {}
  local methods = {}

  local function check_self(ch, fname)
    if getmetatable(ch) ~= Chan then
      raise("invalid", fmt("%s: expected a channel (got %s)", fname, type(ch)), 3)
    end
  end

  local function raise_closed(fname, level)
    raise("closed", fname .. ": the channel is closed", level + 1)
  end

  -- ch:send(v [, timeout]) -> true | nil, "timeout"
  function methods.send(ch, v, timeout)
    check_self(ch, "channel:send")
    if v == nil then raise("invalid", "channel:send: value must not be nil", 2) end
    timeout = timeout_arg(I, "channel:send", timeout)
    local c = ch._c
    local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
    local r = C.sl_chan_send(c, timeout, can_block)
    if r > 0 then
      ch._v[r] = v
      return true
    end
    if r == 0 then
      local k, vals = C.sl_chan_parked_key(c), ch._v
      vals[k] = v
      local w = co_yield(PARK)
      if w == WAKE_OK then return true end
      vals[k] = nil
      C.sl_chan_free_key(c, k)
      if w == WAKE_TIMEOUT then return nil, "timeout" end
      if w == WAKE_CANCEL then raise_cancelled(2) end
      raise_closed("channel:send", 2)
    end
    if r == TIMEDOUT then return nil, "timeout" end
    if r == CLOSED then raise_closed("channel:send", 2) end
    fail(I, r, "channel:send", r == -9 and "out of memory" or nil)
  end

  -- The receive of recv and iter: fname names it in errors (level 3).
  local function receive(ch, timeout, fname)
    local c = ch._c
    local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
    local r = C.sl_chan_recv(c, timeout, can_block)
    if r == 0 then
      local w = co_yield(PARK)
      if w == WAKE_OK then
        if C.sl_ffi_cancel_pending() ~= 0 then
          C.sl_chan_abandon(c)
          raise_cancelled(3)
        end
        r = C.sl_chan_take(c)
      elseif w == WAKE_TIMEOUT then
        return nil, "timeout"
      elseif w == WAKE_CANCEL then
        raise_cancelled(3)
      else
        return nil, "closed"
      end
    end
    if r > 0 then
      local vals = ch._v
      local v = vals[r]
      vals[r] = nil
      return v
    end
    if r == CLOSED then return nil, "closed" end
    if r == TIMEDOUT then return nil, "timeout" end
    fail(I, r, fname, nil, 3)
  end

  -- ch:recv([timeout]) -> v | nil, "closed" | nil, "timeout"
  function methods.recv(ch, timeout)
    check_self(ch, "channel:recv")
    timeout = timeout_arg(I, "channel:recv", timeout)
    return receive(ch, timeout, "channel:recv")
  end

  -- ch:try_send(v) -> true | false, never waits (nor barges)
  function methods.try_send(ch, v)
    check_self(ch, "channel:try_send")
    if v == nil then raise("invalid", "channel:try_send: value must not be nil", 2) end
    local r = C.sl_chan_try_send(ch._c)
    if r > 0 then
      ch._v[r] = v
      return true
    end
    if r == 0 then return false end
    if r == CLOSED then raise_closed("channel:try_send", 2) end
    fail(I, r, "channel:try_send", "out of memory")
  end

  -- ch:try_recv() -> v | nil, "empty" | nil, "closed"
  function methods.try_recv(ch)
    check_self(ch, "channel:try_recv")
    local r = C.sl_chan_try_recv(ch._c)
    if r > 0 then
      local vals = ch._v
      local v = vals[r]
      vals[r] = nil
      return v
    end
    if r == 0 then return nil, "empty" end
    return nil, "closed"
  end

  function methods.close(ch)
    check_self(ch, "channel:close")
    C.sl_chan_close(ch._c)
  end

  local function step(ch)
    return (receive(ch, -1, "channel:iter"))   -- nil only once closed and drained
  end

  -- for v in ch:iter() do ... end: receives until closed and drained.
  function methods.iter(ch)
    check_self(ch, "channel:iter")
    return step, ch
  end

  function methods.stats(ch)
    check_self(ch, "channel:stats")
    local c = ch._c
    return {
      capacity = C.sl_chan_capacity(c), count = C.sl_chan_count(c), closed = C.sl_chan_closed(c) ~= 0,
      send = sffi.stats(C.sl_chan_send_prim(c), {}), recv = sffi.stats(C.sl_chan_recv_prim(c), {}),
    }
  end

  local getters = {
    capacity = function(ch) return C.sl_chan_capacity(ch._c) end,
    count = function(ch) return C.sl_chan_count(ch._c) end,
    closed = function(ch) return C.sl_chan_closed(ch._c) ~= 0 end,
    waiting_senders = function(ch) return C.sl_prim_waiting(C.sl_chan_send_prim(ch._c)) end,
    waiting_receivers = function(ch) return C.sl_prim_waiting(C.sl_chan_recv_prim(ch._c)) end,
  }

  Chan.__index = sffi.indexer(methods, getters)
  Chan.__newindex = function(ch, k)
    raise("invalid", fmt("channel: field '%s' is %s", tostring(k),
      getters[k] and "read-only" or "not settable"), 2)
  end
  Chan.__tostring = function(ch)
    local c = ch._c
    return fmt("channel (%d/%s buffered, %d senders and %d receivers waiting%s)", C.sl_chan_count(c),
      describe(C.sl_chan_capacity(c)), C.sl_prim_waiting(C.sl_chan_send_prim(c)),
      C.sl_prim_waiting(C.sl_chan_recv_prim(c)), C.sl_chan_closed(c) ~= 0 and ", closed" or "")
  end

  -- sluice.channel([capacity]) -> channel; capacity 0 (the default) is a
  -- rendezvous: a send waits for a receiver.
  function M.channel(capacity)
    if capacity == nil then capacity = 0 end
    if type(capacity) ~= "number" or capacity < 0 or capacity ~= floor(capacity) or capacity > MAX then
      raise("invalid", "channel: capacity must be a non-negative integer (got " .. describe(capacity) .. ")", 2)
    end
    local c = C.sl_chan_new(capacity)
    if c == nil then raise("invalid", "channel: out of memory", 2) end
    return setmetatable({ _c = ffi.gc(c, C.sl_chan_free), _v = {} }, Chan)
  end

  ------------------------------------------------------------ select

  -- sluice.select{ {ch, "recv"}, {ch2, "send", v}, ... [, timeout = s] }
  --   -> i, v         case i done: a recv's value (a send: i alone)
  --   -> i, nil, "closed"   case i is a recv on a closed, drained channel
  --   -> nil, "timeout"
  -- Waits until one of the operations can be done and does exactly that
  -- one.  When several can be done at once the first in the list is
  -- (list them by priority).  A send case on a closed channel raises
  -- "closed", as ch:send does.  Cancelled while waiting, none is done; a
  -- recv done for a task cancelled before it ran is passed on (to the
  -- next receiver or back to the front of the buffer); a send done stays
  -- done and the select returns (the cancellation takes effect at the
  -- next blocking call), as with ch:send.
  local function check_cases(cases)
    if type(cases) ~= "table" or #cases == 0 then
      raise("invalid", "sluice.select: cases must be a non-empty list (got " .. describe(cases) .. ")", 3)
    end
    for i = 1, #cases do
      local c = cases[i]
      local op = type(c) == "table" and c[2]
      if type(c) ~= "table" or getmetatable(c[1]) ~= Chan or (op ~= "recv" and op ~= "send") then
        raise("invalid", fmt("sluice.select: case %d must be {channel, \"recv\"} or {channel, \"send\", value}", i), 3)
      end
      if op == "send" and c[3] == nil then
        raise("invalid", fmt("sluice.select: case %d sends nil (values must not be nil)", i), 3)
      end
    end
    return timeout_arg(I, "sluice.select", cases.timeout)
  end

  -- The results of a select that is over (sel freed), errors raised.
  local function select_result(cases, sel, parked, w)
    local n = #cases
    for i = 1, n do   -- the values of the send cases not done
      local k = C.sl_chan_sel_case_key(sel, i - 1)
      if k > 0 then cases[i][1]._v[k] = nil end
    end
    local i = C.sl_chan_sel_fired(sel)
    local closed, key = C.sl_chan_sel_closed(sel) ~= 0, C.sl_chan_sel_key(sel)
    local c, v = cases[i], nil
    if w == WAKE_OK and c and c[2] == "recv" and not closed then
      if parked and C.sl_ffi_cancel_pending() ~= 0 then
        C.sl_chan_sel_abandon(sel)
        C.sl_chan_sel_done(sel)
        raise_cancelled(3)
      end
      if parked then key = C.sl_chan_sel_take(sel) end
      local vals = c[1]._v
      v = vals[key]
      vals[key] = nil
    end
    C.sl_chan_sel_done(sel)
    if w == WAKE_TIMEOUT then return nil, "timeout" end
    if w == WAKE_CANCEL then raise_cancelled(3) end
    if closed then
      if c[2] == "send" then raise("closed", "sluice.select: the channel of case " .. i .. " is closed", 3) end
      return i, nil, "closed"
    end
    if c[2] == "send" then return i end
    return i, v
  end

  function M.select(cases)
    local timeout = check_cases(cases)
    local n = #cases
    local sel = C.sl_chan_sel_new(n)
    if sel == nil then raise("invalid", "sluice.select: out of memory", 2) end
    for i = 1, n do C.sl_chan_sel_case(sel, i - 1, cases[i][1]._c, cases[i][2] == "send" and 1 or 0) end
    local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
    local r = C.sl_chan_select(sel, timeout, can_block)
    if r == 1 then
      local i = C.sl_chan_sel_fired(sel)
      if cases[i][2] == "send" and C.sl_chan_sel_closed(sel) == 0 then
        cases[i][1]._v[C.sl_chan_sel_key(sel)] = cases[i][3]
      end
      return select_result(cases, sel, false, WAKE_OK)
    end
    if r == 0 then
      for i = 1, n do
        local k = C.sl_chan_sel_case_key(sel, i - 1)
        if k > 0 then cases[i][1]._v[k] = cases[i][3] end
      end
      return select_result(cases, sel, true, co_yield(PARK))
    end
    C.sl_chan_sel_done(sel)
    if r == TIMEDOUT then return nil, "timeout" end
    fail(I, r, "sluice.select", r == -9 and "out of memory" or nil)
  end

  ------------------------------------------------------------ imap
  -- sluice.imap(source, fn [, opts]) -> iterator
  --
  -- Calls fn(item) for the items of source (a list, an iterator function
  -- that returns nil at its end, or a channel, read until closed) with at
  -- most opts.concurrency calls in flight (default 1), and gives their
  -- results in input order (opts.ordered, default true) or in the order
  -- they complete: `for r in sluice.imap(urls, fetch, {concurrency = 8})`.
  --
  -- Bounded look-ahead: an item is pulled from the source only against a
  -- token, and the loop gives a token back for every result it takes, so
  -- at most 2 x concurrency items are pulled and not yet consumed (at most
  -- concurrency in flight, the rest finished and buffered).  Nothing
  -- polls: the workers wait on a channel of tokens, the loop on a signal.
  --
  -- The calls run in `concurrency` tasks of the caller's scope, started at
  -- the first step of the loop.  The first error of fn or of the source
  -- closes the iterator and is raised from the loop, as is a nil result
  -- (it would end a for loop).  A loop left early (break) should call
  -- it:close(): it cancels the calls in flight and waits for them; an
  -- error or cancellation of the loop itself closes it too.  Otherwise
  -- the workers stay parked and the caller's scope cannot end.

  local Imap = {}
  local imap_methods = {}
  local is_cancel = function(e) return M.is_error(e, "cancelled") end

  local function imap_close(it)
    if it.done then return end
    it.done = true
    it.tokens:close()
    it.signal:close()
    local workers = it.workers or {}
    for i = 1, #workers do workers[i]:cancel() end
    if co_isyieldable() then
      for i = 1, #workers do
        if C.sl_ffi_cancel_pending() ~= 0 then break end
        pcall(workers[i].await, workers[i])
      end
    end
  end

  local function wake_consumer(it)
    if it.waiting then
      it.waiting = false
      it.signal:try_send(true)
    end
  end

  local function fail_with(it, err)
    if it.err == nil then it.err = err end
    wake_consumer(it)
  end

  -- The next item of the source and its index, or nil at its end (or on
  -- an error, recorded for the loop).
  local function pull(it)
    local kind, src = it.kind, it.src
    local i = it.pulled + 1
    if kind == "list" then
      local item = src[i]
      if item ~= nil then it.pulled = i return item, i end
    elseif kind == "channel" then
      it.pulled = i   -- receivers are served in order: indices match
      local item = src:recv()
      if item ~= nil then return item, i end
    else
      local lock = it.lock   -- an iterator may block: one caller at a time
      if lock:try_recv() == nil then lock:recv() end
      if it.total or it.done then   -- ended while this worker waited
        lock:try_send(true)
        return nil
      end
      local ok, item = pcall(src)
      lock:try_send(true)
      if not ok then
        if is_cancel(item) then error(item, 0) end
        fail_with(it, item)
        return nil
      end
      i = it.pulled + 1
      if item ~= nil then
        it.pulled = i
        return item, i
      end
    end
    if it.total == nil or i - 1 < it.total then it.total = i - 1 end
    wake_consumer(it)
  end

  local function worker(it)
    local tokens, fn, results, window = it.tokens, it.fn, it.results, it.window
    while true do
      if tokens:recv() == nil or it.done or it.total or it.err ~= nil then return end
      local item, i = pull(it)
      if item == nil then return end
      local ok, res = pcall(fn, item)
      if it.done then return end
      if not ok then
        if is_cancel(res) then error(res, 0) end
        return fail_with(it, res)
      end
      if res == nil then
        return fail_with(it, I.new_error("invalid", fmt("sluice.imap: fn returned nil for item %d " ..
          "(a nil result would end the loop)", i), 1))
      end
      if it.ordered then
        results[(i - 1) % window + 1] = res
        if i == it.consumed + 1 then wake_consumer(it) end
      else
        local q = it.qtail + 1
        it.qtail = q
        results[(q - 1) % window + 1] = res
        wake_consumer(it)
      end
    end
  end

  local function imap_start(it)
    local n = it.conc
    if it.kind == "list" then n = max(1, min(n, #it.src)) end
    it.workers = {}
    for k = 1, n do
      local w = M.spawn(worker, it)
      w.name = "sluice.imap worker"   -- for deadlock reports
      it.workers[k] = w
    end
  end

  local function imap_next(it)
    if it.done then return nil end
    if not co_isyieldable() then I.blocked("sluice.imap") end
    if not it.workers then imap_start(it) end
    local results, window, tokens = it.results, it.window, it.tokens
    while true do
      local err = it.err
      if err ~= nil then
        imap_close(it)
        error(err, 0)
      end
      local c = it.consumed
      if it.ordered or it.qtail > c then
        local slot = c % window + 1
        local r = results[slot]
        if r ~= nil then
          results[slot] = nil
          it.consumed = c + 1
          tokens:try_send(true)
          return r
        end
      end
      if it.total and c >= it.total then
        imap_close(it)
        return nil
      end
      it.waiting = true
      local ok, e = pcall(it.signal.recv, it.signal)
      it.waiting = false
      if not ok then
        imap_close(it)
        error(e, 0)
      end
    end
  end

  Imap.__index = imap_methods
  Imap.__call = imap_next

  -- it:close(): stops the map; idempotent.
  function imap_methods.close(it)
    if getmetatable(it) ~= Imap then
      raise("invalid", "imap:close: expected an imap iterator (got " .. type(it) .. ")", 2)
    end
    imap_close(it)
  end

  Imap.__tostring = function(it)
    return fmt("imap (%d pulled, %d consumed%s)", it.pulled, it.consumed, it.done and ", closed" or "")
  end

  local MAX_CONC = floor(MAX / 2)

  function M.imap(source, fn, opts)
    local kind
    if getmetatable(source) == Chan then kind = "channel"
    elseif type(source) == "function" then kind = "function"
    elseif type(source) == "table" then kind = "list"
    else
      raise("invalid", "sluice.imap: source must be a list, an iterator function or a channel (got " ..
        describe(source) .. ")", 2)
    end
    check_function("sluice.imap", "fn", fn)
    if opts ~= nil and type(opts) ~= "table" then
      raise("invalid", "sluice.imap: opts must be a table (got " .. describe(opts) .. ")", 2)
    end
    local conc = opts and opts.concurrency
    if conc == nil then conc = 1 end
    if type(conc) ~= "number" or conc < 1 or conc ~= floor(conc) or conc > MAX_CONC then
      raise("invalid", "sluice.imap: concurrency must be a positive integer (got " .. describe(conc) .. ")", 2)
    end
    local ordered = opts and opts.ordered
    if ordered == nil then ordered = true end
    if type(ordered) ~= "boolean" then
      raise("invalid", "sluice.imap: ordered must be a boolean (got " .. describe(ordered) .. ")", 2)
    end
    local window = 2 * conc
    local tokens = M.channel(window)
    for _ = 1, window do tokens:try_send(true) end
    local it = {
      kind = kind, src = source, fn = fn, conc = conc, window = window, ordered = ordered,
      tokens = tokens, signal = M.channel(1), results = {}, pulled = 0, consumed = 0, qtail = 0,
      total = nil, err = nil, waiting = false, done = false, workers = nil,
    }
    if kind == "function" then
      it.lock = M.channel(1)
      it.lock:try_send(true)
    end
    return setmetatable(it, Imap)
  end
end
