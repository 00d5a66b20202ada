//! The Lua scripts that make each store call one Redis command.
//!
//! A session is one hash. Its fields are `.`+key for values (`v` or `f`, for flash, followed by
//! the JSON text) and `@created`, `@idle`, `@deadline`, `@expires` (milliseconds) for the
//! record's metadata. Expiry is the key's own TTL, set by `PEXPIREAT` from the server's clock
//! as `min(now + @idle, @deadline)`, so every app instance computes it the same way; `@expires`
//! keeps a copy, so a plain `HGETALL` reads the whole record.

/// Shared by the scripts: sets the expiry of `key` (its TTL and `@expires`) to
/// `min(now + idle, deadline)` on the server's clock. Returns the new expiry in milliseconds as
/// text, or `nil` after deleting a record that is already dead.
const REFRESH: &str = r#"
local function refresh(key, idle, deadline)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local expires = now + idle
  if deadline and deadline < expires then expires = deadline end
  if expires <= now then
    redis.call('DEL', key)
    return nil
  end
  expires = string.format('%d', expires)
  redis.call('HSET', key, '@expires', expires)
  redis.call('PEXPIREAT', key, expires)
  return expires
end
"#;

/// `KEYS[1]`: the session. Refreshes its expiry and returns every field and value (with the
/// new `@expires`), or nil. A hash without `@idle` or `@expires` is not ours: it is returned
/// untouched for the client to report.
pub(crate) const LOAD: &str = r#"
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return false end
local idle, deadline, at
for i = 1, #fields, 2 do
  if fields[i] == '@idle' then idle = tonumber(fields[i + 1])
  elseif fields[i] == '@deadline' then deadline = tonumber(fields[i + 1])
  elseif fields[i] == '@expires' then at = i + 1 end
end
if not idle or not at then return fields end
local expires = refresh(KEYS[1], idle, deadline)
if not expires then return false end
fields[at] = expires
return fields
"#;

/// `KEYS[1]`: the new session; `ARGV[1]`, `ARGV[2]`: its idle timeout and deadline ('' for
/// none) in milliseconds; then field, value, ... Writes only if the key is free (NX
/// semantics). Returns 1 if created, 0 if the id was taken, -1 if the record was already past
/// its deadline (and so was not kept).
pub(crate) const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3, math.min(#ARGV, 7002)))
for i = 7003, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if not refresh(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])) then return -1 end
return 1
"#;

/// `KEYS[1]`: the session; `ARGV[1]`: a new `@idle` or ''; `ARGV[2]`: '1' to refresh the
/// expiry (always done with a new `@idle`) or ''; then field, value pairs where an empty value
/// removes the field. Writes nothing if the session does not exist. Returns 1 if applied, 0 if
/// missing.
pub(crate) const UPDATE: &str = r#"
local meta = redis.call('HMGET', KEYS[1], '@idle', '@deadline')
local idle, deadline = tonumber(meta[1]), tonumber(meta[2])
if not idle then return 0 end
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
if ARGV[1] ~= '' then
  idle = tonumber(ARGV[1])
  redis.call('HSET', KEYS[1], '@idle', ARGV[1])
elseif ARGV[2] == '' then
  return 1
end
if not refresh(KEYS[1], idle, deadline) then return 0 end
return 1
"#;

/// A script with its SHA-1, for `EVALSHA`.
pub(crate) struct Script {
    pub(crate) name: &'static str,
    pub(crate) source: String,
    pub(crate) sha1: String,
}

impl Script {
    pub(crate) fn new(name: &'static str, body: &str) -> Self {
        let source = format!("{REFRESH}{body}");
        let digest =
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, source.as_bytes());
        let sha1 = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Self { name, source, sha1 }
    }
}
