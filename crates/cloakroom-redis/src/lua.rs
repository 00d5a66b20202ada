//! The Lua script that makes each store call one Redis command, and lets one command carry the
//! calls of many requests.
//!
//! A session is one hash. Its fields are `.`+key for values (`v` or `f`, for flash, followed by
//! the JSON text) and `@created`, `@idle`, `@deadline`, `@expires` (milliseconds) for the
//! record's metadata. Expiry is the key's own TTL, set by `PEXPIREAT` from the server's clock
//! as `min(now + @idle, @deadline)`, so every app instance computes it the same way; `@expires`
//! keeps a copy, so a plain `HGETALL` reads the whole record.

/// Shared by the operations. `expiry` is `min(now + idle, deadline)` in milliseconds as text
/// on the server's clock, or `nil` if that is already past. `refresh` sets the expiry of `key`
/// (its TTL and `@expires`) to it and returns it, or `nil` after deleting a record that is
/// already dead.
const REFRESH: &str = r#"
local function expiry(idle, deadline)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local expires = now + idle
  if deadline and deadline < expires then expires = deadline end
  if expires <= now then return nil end
  return string.format('%d', expires)
end

local function refresh(key, idle, deadline)
  local expires = expiry(idle, deadline)
  if not expires then
    redis.call('DEL', key)
    return nil
  end
  redis.call('HSET', key, '@expires', expires)
  redis.call('PEXPIREAT', key, expires)
  return expires
end
"#;

/// The session operations, each a function of the session's key and where its arguments
/// start in `ARGV` (`a`) and how many there are (`n`).
///
/// - `load` (no arguments): refreshes the expiry and returns every field and value (with the
///   new `@expires`), or false. A hash without `@idle` or `@expires` is not ours: it is
///   returned untouched for the client to report.
/// - `create` (idle timeout, deadline or '', in milliseconds, then field, value, ...): writes
///   only if the key is free (NX semantics). Returns 1 if created, 0 if the id was taken, -1 if
///   the record was already past its deadline (and so was not written). The first `HSET`
///   carries `@expires` too, so a new session is `EXISTS`, `TIME`, `HSET`, `PEXPIREAT`;
///   `HSET` takes the fields 7,000 arguments at a time, under Lua's stack limit.
/// - `update` (a new `@idle` or '', '1' to refresh the expiry (always done with a new `@idle`)
///   or '', '1' to return the session or '', then field, value, ... where an empty value
///   removes the field): writes nothing if the session does not exist. Returns 0 if missing;
///   if applied, every field and value of the session as it now is (when asked, for the local
///   cache), else the new `@expires` if the expiry moved, or 1.
const OPERATIONS: &str = r#"
local function load(key)
  local fields = redis.call('HGETALL', key)
  if #fields == 0 then return false end
  local idle, deadline, at
  for i = 1, #fields, 2 do
    if fields[i] == '@idle' then idle = tonumber(fields[i + 1])
    elseif fields[i] == '@deadline' then deadline = tonumber(fields[i + 1])
    elseif fields[i] == '@expires' then at = i + 1 end
  end
  if not idle or not at then return fields end
  local expires = refresh(key, idle, deadline)
  if not expires then return false end
  fields[at] = expires
  return fields
end

local function create(key, a, n)
  if redis.call('EXISTS', key) == 1 then return 0 end
  local expires = expiry(tonumber(ARGV[a]), tonumber(ARGV[a + 1]))
  if not expires then return -1 end
  local last = a + n - 1
  redis.call('HSET', key, '@expires', expires, unpack(ARGV, a + 2, math.min(a + 7001, last)))
  for i = a + 7002, last, 7000 do
    redis.call('HSET', key, unpack(ARGV, i, math.min(i + 6999, last)))
  end
  redis.call('PEXPIREAT', key, expires)
  return 1
end

local function update(key, a, n)
  local meta = redis.call('HMGET', key, '@idle', '@deadline')
  local idle, deadline = tonumber(meta[1]), tonumber(meta[2])
  if not idle then return 0 end
  for i = a + 3, a + n - 1, 2 do
    if ARGV[i + 1] == '' then
      redis.call('HDEL', key, ARGV[i])
    else
      redis.call('HSET', key, ARGV[i], ARGV[i + 1])
    end
  end
  if ARGV[a] ~= '' then
    idle = tonumber(ARGV[a])
    redis.call('HSET', key, '@idle', ARGV[a])
  end
  local expires
  if ARGV[a] ~= '' or ARGV[a + 1] ~= '' then
    expires = refresh(key, idle, deadline)
    if not expires then return 0 end
  end
  if ARGV[a + 2] ~= '' then return redis.call('HGETALL', key) end
  return expires or 1
end
"#;

/// `KEYS`: the sessions; `ARGV`: for each key in turn, the operation's name, the number of its
/// arguments, and those arguments. Returns one `{1, reply}` or `{0, error}` per key: an error
/// (a key holding another program's data, say) fails only its own operation.
///
/// Every operation ends with a read of its key (`EXISTS`), for the local copy's invariant (see
/// [`cache`](crate::cache)): a write to a key takes it out of every connection's tracking
/// table, this one's included (NOLOOP only spares us the message), so without a read after
/// the write Redis would never tell this connection of the key's next change. Redis 7 tracks
/// the keys a script reads for the connection that called it.
const DISPATCH: &str = r#"
local operations = { load = load, create = create, update = update }
local replies = {}
local a = 1
for k = 1, #KEYS do
  local n = tonumber(ARGV[a + 1])
  local ok, reply = pcall(operations[ARGV[a]], KEYS[k], a + 2, n)
  redis.call('EXISTS', KEYS[k])
  if ok then
    replies[k] = { 1, reply }
  else
    replies[k] = { 0, type(reply) == 'table' and reply.err or tostring(reply) }
  end
  a = a + 2 + n
end
return replies
"#;

/// The script with its SHA-1, for `EVALSHA`.
pub(crate) struct Script {
    pub(crate) source: String,
    pub(crate) sha1: String,
}

impl Script {
    /// The session script.
    pub(crate) fn sessions() -> Self {
        let source = format!("{REFRESH}{OPERATIONS}{DISPATCH}");
        let digest =
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, source.as_bytes());
        let sha1 = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Self { source, sha1 }
    }
}
