//! The Lua script that makes each store call one Redis command, and lets one command carry the
//! calls of many requests.
//!
//! A session is one hash (laid out in [`codec`](crate::codec), which builds the arguments and
//! reads the replies). Its fields are `.`+key for values (`v` or `f`, for flash, followed by
//! the JSON text) and `@created`, `@idle`, `@deadline`, `@expires` (milliseconds) for the
//! record's metadata. Expiry is the key's own TTL, set by `PEXPIREAT` from the server's clock
//! as `min(now + @idle, @deadline)`, so every app instance computes it the same way; `@expires`
//! keeps a copy, so a plain `HGETALL` reads the whole record.

use fred::bytes_utils::Str;
use fred::types::Value;

/// An operation of the session script, one per store call that runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Load,
    Create,
    Update,
}

impl Operation {
    /// Its name in the script (the [`DISPATCH`] table's key).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Create => "create",
            Self::Update => "update",
        }
    }
}

/// Shared by the operations. `expiry` is `min(now + idle, deadline)` in milliseconds as text
/// on the server's clock, or `nil` if that is already past. `refresh` sets the expiry of `key`
/// (its TTL and `@expires`) to it and returns it, or `nil` after deleting a record that is
/// already dead.
///
/// The clock is read once per script call, at its first expiry: a batch's calls run within
/// a fraction of a millisecond of each other, and every `redis.call` has a cost of its own
/// (see `BENCHMARKS.md`).
const REFRESH: &str = r#"
local clock
local function expiry(idle, deadline)
  if not clock then
    local time = redis.call('TIME')
    clock = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  end
  local now = clock
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
///   carries `@expires` too, so a new session is `EXISTS`, `HSET`, `PEXPIREAT` (and the
///   script call's one `TIME`);
///   `HSET` takes the fields 7,000 arguments at a time, under Lua's stack limit.
/// - `update` (a new `@idle` or '', '1' to refresh the expiry (always done with a new `@idle`
///   or `@deadline`) or '', '1' to return the session or '', a new `@deadline` or '' (kept
///   only if earlier), then field, value, ... where an empty value removes the field): writes
///   nothing if the session does not exist. Returns 0 if missing;
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

-- Writes a new session whose key was found free (see the dispatch below).
local function create(key, a, n)
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
  for i = a + 4, a + n - 1, 2 do
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
  local new_deadline = tonumber(ARGV[a + 3])
  if new_deadline and (not deadline or new_deadline < deadline) then
    deadline = new_deadline
    redis.call('HSET', key, '@deadline', ARGV[a + 3])
  end
  local expires
  if ARGV[a] ~= '' or ARGV[a + 1] ~= '' or ARGV[a + 3] ~= '' then
    expires = refresh(key, idle, deadline)
    if not expires then return 0 end
  end
  if ARGV[a + 2] ~= '' then return redis.call('HGETALL', key) end
  return expires or 1
end
"#;

/// `KEYS`: the sessions; `ARGV`: for each key in turn, the operation's name, the number of its
/// arguments, and those arguments. Returns one `{1, reply}` or `{0, code, message}` per key: an
/// error (a key holding another program's data, say) fails only its own operation.
///
/// The code says why, from a fixed set the client reads into [`ScriptError`]: `wrongtype` when
/// Redis answered `WRONGTYPE` (the key holds something other than a hash), `redis` when Redis
/// refused a command for another reason (`OOM`, `READONLY`, `NOPERM`, ...), `lua` when the
/// script itself failed. The script tells them apart where the error is raised: a Redis error
/// reply starts with its code in capitals (the protocol's convention), a Lua error with the
/// script's name and line. (`pcall` hands over a Redis error as a `{err = ...}` table before
/// Redis 7 and as its text since.) The message is for people, never parsed.
///
/// Every operation but `create` ends with a read of its key (`EXISTS`), for the local copy's
/// invariant (see [`cache`](crate::cache)): a write to a key takes it out of every
/// connection's tracking table, this one's included (NOLOOP only spares us the message), so
/// without a read after the write Redis would never tell this connection of the key's next
/// change. Redis 7 tracks the keys a script reads for the connection that called it; before
/// 7.2 it tracks, at each read-only command inside the script, every one of the script's
/// `KEYS` (each read in a script call of n keys costs n tracking-table inserts; 7.2 tracks the
/// keys the command read, redis/redis#11770).
///
/// A create keeps no copy, so a create that writes leaves its key untracked: tracking every
/// new session would fill Redis's tracking table (`tracking-table-max-keys`, a million by
/// default) with sessions this instance may never read, and past that size Redis evicts
/// tracked keys with an invalidation message each. Because before 7.2 any read tracks all the
/// keys, a key stays untracked only if it is written after the script's last read: the
/// creates' `EXISTS` checks run in the first pass with the other operations, their writes
/// after it. A create's key is a fresh random id, so no other call of the script has it. If
/// one did (a collision of 192-bit ids), a create after the other call is answered as taken
/// (the store tries another id), and a call after the create runs before the create writes.
const DISPATCH: &str = r#"
local function failure(err)
  local message = type(err) == 'table' and err.err or tostring(err)
  local code = string.match(message, '^(%u+)$') or string.match(message, '^(%u+) ')
  if code == 'WRONGTYPE' then return { 0, 'wrongtype', message } end
  if code then return { 0, 'redis', message } end
  return { 0, 'lua', message }
end

local function outcome(ok, reply)
  if ok then return { 1, reply } end
  return failure(reply)
end

local operations = { load = load, update = update }
local replies = {}
local creates = {}
local claimed = {}
local a = 1
for k = 1, #KEYS do
  local key, operation, n = KEYS[k], ARGV[a], tonumber(ARGV[a + 1])
  if operation == 'create' then
    if claimed[key] or redis.call('EXISTS', key) == 1 then
      replies[k] = { 1, 0 }
    else
      creates[#creates + 1] = { k, a + 2, n }
    end
  else
    local ok, reply = pcall(operations[operation], key, a + 2, n)
    redis.call('EXISTS', key)
    replies[k] = outcome(ok, reply)
  end
  claimed[key] = true
  a = a + 2 + n
end
for _, call in ipairs(creates) do
  replies[call[1]] = outcome(pcall(create, KEYS[call[1]], call[2], call[3]))
end
return replies
"#;

/// The script with its SHA-1, for `EVALSHA`.
pub(crate) struct Script {
    pub(crate) source: String,
    /// Built once: each `EVALSHA` sends a clone, which shares its bytes.
    pub(crate) sha1: Str,
}

impl Script {
    /// The session script.
    pub(crate) fn sessions() -> Self {
        let source = format!("{REFRESH}{OPERATIONS}{DISPATCH}");
        let digest =
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, source.as_bytes());
        let sha1: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Self {
            source,
            sha1: Str::from(sha1),
        }
    }
}

/// Why one call's operation failed inside the script (its `{0, code, message}`, see
/// [`DISPATCH`]). The batch's other calls are not affected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ScriptError {
    /// Redis answered `WRONGTYPE`: the key holds something other than a hash, so another
    /// program's data.
    WrongType,
    /// Redis refused one of the operation's commands for another reason (`OOM`, `READONLY`,
    /// `NOPERM`, ...); Redis's message.
    Refused(String),
    /// The script itself failed (a Lua error: a bug); Lua's message.
    Failed(String),
    /// The reply is not one the script sends.
    Malformed,
}

impl ScriptError {
    /// What the script says under `code`, with its `message`.
    fn from_code(code: &str, message: String) -> Self {
        match code {
            "wrongtype" => Self::WrongType,
            "redis" => Self::Refused(message),
            "lua" => Self::Failed(message),
            _ => Self::Malformed,
        }
    }
}

/// One call's part of the script's reply: `{1, reply}` is the operation's reply (a missing one
/// is Lua's `nil`), `{0, code, message}` its error.
pub(crate) fn operation_reply(item: Value) -> Result<Value, ScriptError> {
    let Value::Array(items) = item else {
        return Err(ScriptError::Malformed);
    };
    let mut items = items.into_iter();
    match (items.next(), items.next(), items.next()) {
        (Some(Value::Integer(1)), reply, _) => Ok(reply.unwrap_or(Value::Null)),
        (Some(Value::Integer(0)), Some(code), message) => {
            let code = code.as_str().ok_or(ScriptError::Malformed)?;
            let message = message
                .and_then(|message| message.as_string())
                .unwrap_or_default();
            Err(ScriptError::from_code(&code, message))
        }
        _ => Err(ScriptError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(code: &str, message: &str) -> Value {
        Value::Array(vec![Value::Integer(0), code.into(), message.into()])
    }

    #[test]
    fn a_reply_is_the_operation_s_own() {
        let fields = Value::Array(vec!["@idle".into(), "1000".into()]);
        let ok = Value::Array(vec![Value::Integer(1), fields.clone()]);
        assert_eq!(operation_reply(ok), Ok(fields));
        // Lua's nil ends the table: `{1, nil}` arrives as `{1}`.
        let nil = Value::Array(vec![Value::Integer(1)]);
        assert_eq!(operation_reply(nil), Ok(Value::Null));
    }

    #[test]
    fn each_error_code_is_its_own_error() {
        let wrong = "WRONGTYPE Operation against a key holding the wrong kind of value";
        assert_eq!(
            operation_reply(failed("wrongtype", wrong)),
            Err(ScriptError::WrongType)
        );
        let oom = "OOM command not allowed when used memory > 'maxmemory'.";
        assert_eq!(
            operation_reply(failed("redis", oom)),
            Err(ScriptError::Refused(oom.to_owned()))
        );
        let bug = "user_script:12: attempt to perform arithmetic on a nil value";
        assert_eq!(
            operation_reply(failed("lua", bug)),
            Err(ScriptError::Failed(bug.to_owned()))
        );
    }

    #[test]
    fn the_code_decides_not_the_message() {
        // A message that mentions WRONGTYPE is still what its code says.
        let sneaky = "user_script:1: WRONGTYPE in a Lua error";
        assert_eq!(
            operation_reply(failed("lua", sneaky)),
            Err(ScriptError::Failed(sneaky.to_owned()))
        );
    }

    #[test]
    fn anything_else_is_malformed() {
        for reply in [
            Value::Integer(1),
            Value::Null,
            Value::Array(Vec::new()),
            Value::Array(vec![Value::Integer(2), "x".into()]),
            Value::Array(vec![Value::Integer(0)]),
            failed("WRONGTYPE", "an unknown code"),
        ] {
            assert_eq!(
                operation_reply(reply.clone()),
                Err(ScriptError::Malformed),
                "{reply:?}"
            );
        }
    }

    /// Two creates of one key in one script call (only a collision of fresh ids makes one):
    /// the first writes, the second is answered as taken and writes nothing, although both
    /// checks run before either write.
    #[tokio::test]
    async fn a_second_create_of_a_key_in_one_script_call_finds_it_taken() {
        use fred::interfaces::{ClientLike, HashesInterface, LuaInterface};
        let server = cloakroom_testkit::RedisServer::start()
            .await
            .expect("redis-server starts");
        let config = fred::types::config::Config::from_url(&server.url()).expect("a URL");
        let client = fred::clients::Client::new(config, None, None, None);
        client.init().await.expect("connects");
        let create = |value: &str| -> Vec<Value> {
            let fields = ["60000", "", ".k", value, "@created", "1", "@idle", "60000"];
            let mut args = vec![Value::from("create"), Value::Integer(fields.len() as i64)];
            args.extend(fields.map(Value::from));
            args
        };
        let script = Script::sessions();
        let _: String = client
            .script_load(script.source)
            .await
            .expect("SCRIPT LOAD");
        let args: Vec<Value> = [create("v\"first\""), create("v\"second\"")].concat();
        let reply: Value = client
            .evalsha(script.sha1, vec!["D", "D"], args)
            .await
            .expect("EVALSHA");
        let Value::Array(replies) = reply else {
            panic!("{reply:?}")
        };
        let replies: Vec<_> = replies.into_iter().map(operation_reply).collect();
        assert_eq!(
            replies,
            [Ok(Value::Integer(1)), Ok(Value::Integer(0))],
            "the first create writes, the second finds the id taken"
        );
        let held: Option<String> = client.hget("D", ".k").await.expect("HGET");
        assert_eq!(held.as_deref(), Some("v\"first\""));
    }

    #[test]
    fn the_script_emits_every_code_and_names_every_operation() {
        let source = Script::sessions().source;
        for code in ["'wrongtype'", "'redis'", "'lua'"] {
            assert!(source.contains(code), "{code}");
        }
        for operation in [Operation::Load, Operation::Update] {
            let name = operation.name();
            assert!(
                source.contains(&format!("{name} = {name}")),
                "{name} is not in the dispatch table"
            );
        }
        // Creates are dispatched by name, their writes after every other call's reads.
        let create = Operation::Create.name();
        assert!(source.contains(&format!("operation == '{create}'")));
    }
}
