//! KRPC messages (BEP 5, with BEP 32 `nodes6`/`want`, BEP 42 `ip`, BEP 43
//! `ro`): [`Message::parse`] and [`Message::emit`].
//!
//! Messages from the wild are read leniently, as libtorrent reads them:
//! dictionary keys in any order (the last of duplicates wins), unknown keys
//! skipped, `v` optional, integers with leading zeros accepted. The strict
//! `crate::bencode` decoder rejects unsorted keys, so this file has its own
//! small reader. What we send is canonical bencode (sorted keys, built as a
//! `bencode::Value`).
//!
//! # No-panic contract
//!
//! [`Message::parse`] takes any bytes and returns a message or a
//! [`ParseError`]; it never panics and never recurses. Limits: the datagram
//! is at most [`MAX_DATAGRAM`] bytes, nesting at most [`MAX_DEPTH`] levels
//! (skipped values included), `t` at most [`MAX_TID`] bytes, `v` at most
//! [`MAX_VERSION`], a token at most [`MAX_TOKEN`], and at most
//! [`MAX_NODES`] nodes per family and [`MAX_VALUES`] peers are kept from an
//! answer (the rest are ignored).
//!
//! This file knows nothing of tables or lookups.

use super::NodeId;
use crate::bencode::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Largest datagram we read (a UDP payload on a 1,500-byte path is at most
/// 1,472 bytes; some nodes send slightly more over IPv6).
pub const MAX_DATAGRAM: usize = 2048;
/// Deepest nesting accepted, skipped values included (KRPC needs 3).
pub const MAX_DEPTH: u32 = 16;
/// Longest transaction id accepted (libtorrent sends 2 bytes, others 4–8).
pub const MAX_TID: usize = 16;
/// Longest `v` kept (BEP 20 style client ids are 4 bytes).
pub const MAX_VERSION: usize = 16;
/// Longest token accepted (tokens are opaque; libtorrent sends 4–8 bytes).
pub const MAX_TOKEN: usize = 32;
/// Nodes kept per family from one answer (K is 8; some nodes send more).
pub const MAX_NODES: usize = 16;
/// Peers kept from one answer's `values`.
pub const MAX_VALUES: usize = 200;
/// Longest error message kept.
pub const MAX_ERROR_MSG: usize = 128;

/// BEP 5 error codes (202, a server error, we never send).
pub const ERR_GENERIC: i64 = 201;
pub const ERR_PROTOCOL: i64 = 203;
pub const ERR_METHOD: i64 = 204;

/// Our client version, sent as `v` (BEP 5: two letters and two bytes).
pub const VERSION: &[u8] = b"PL\x00\x01";

/// Which node families a querier wants (BEP 32 `want`: `n4`, `n6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Want {
    pub n4: bool,
    pub n6: bool,
}

/// A query's method and arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    Ping,
    FindNode {
        target: NodeId,
        want: Option<Want>,
    },
    GetPeers {
        info_hash: [u8; 20],
        want: Option<Want>,
    },
    AnnouncePeer {
        info_hash: [u8; 20],
        port: u16,
        implied_port: bool,
        token: Vec<u8>,
    },
}

impl Query {
    pub fn method(&self) -> &'static str {
        match self {
            Query::Ping => "ping",
            Query::FindNode { .. } => "find_node",
            Query::GetPeers { .. } => "get_peers",
            Query::AnnouncePeer { .. } => "announce_peer",
        }
    }
}

/// The arguments of a response (one shape serves every method).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Response {
    pub nodes: Vec<(NodeId, SocketAddr)>,
    pub nodes6: Vec<(NodeId, SocketAddr)>,
    pub values: Vec<SocketAddr>,
    pub token: Option<Vec<u8>>,
}

/// What a message is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Query { id: NodeId, query: Query },
    Response { id: NodeId, response: Response },
    Error { code: i64, message: Vec<u8> },
}

/// One KRPC message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Transaction id, 1..=[`MAX_TID`] bytes.
    pub tid: Vec<u8>,
    pub body: Body,
    /// BEP 42: the requester's address as the responder sees it.
    pub ip: Option<SocketAddr>,
    /// BEP 43: the sender is read-only.
    pub read_only: bool,
    pub version: Option<Vec<u8>>,
}

/// Why bytes are not a message we act on. `query_tid` is set when the
/// bytes were a query (`y` = `q`) with a readable `t`, so that the
/// receiver may answer with an error of `code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub what: &'static str,
    pub query_tid: Option<Vec<u8>>,
    pub code: i64,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "krpc: {}", self.what)
    }
}

impl std::error::Error for ParseError {}

fn bad(what: &'static str) -> ParseError {
    ParseError {
        what,
        query_tid: None,
        code: ERR_PROTOCOL,
    }
}

/// A position in bytes being read; every read checks bounds.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn int(&mut self) -> Result<i64, ParseError> {
        if self.peek() != Some(b'i') {
            return Err(bad("expected an integer"));
        }
        self.pos += 1;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.pos += 1;
        }
        let mut n: i64 = 0;
        let mut digits = 0;
        while let Some(c) = self.peek() {
            if !c.is_ascii_digit() {
                break;
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(i64::from(c - b'0')))
                .ok_or(bad("integer overflow"))?;
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 || self.peek() != Some(b'e') {
            return Err(bad("invalid integer"));
        }
        self.pos += 1;
        Ok(if neg { -n } else { n })
    }

    fn bytes(&mut self) -> Result<&'a [u8], ParseError> {
        let mut len: usize = 0;
        let mut digits = 0;
        while let Some(c) = self.peek() {
            if !c.is_ascii_digit() {
                break;
            }
            if digits >= 6 {
                return Err(bad("string too long"));
            }
            len = len * 10 + usize::from(c - b'0');
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 || self.peek() != Some(b':') {
            return Err(bad("expected a string"));
        }
        self.pos += 1;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or(bad("string past the end"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(bad("string past the end"))?;
        self.pos = end;
        Ok(s)
    }

    /// Skips one value of any kind, without recursion.
    fn skip(&mut self) -> Result<(), ParseError> {
        let mut depth: u32 = 0;
        loop {
            match self.peek() {
                Some(b'i') => {
                    self.int()?;
                }
                Some(b'l' | b'd') => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(bad("nested too deep"));
                    }
                    self.pos += 1;
                    continue;
                }
                Some(b'e') if depth > 0 => {
                    self.pos += 1;
                    depth -= 1;
                }
                Some(c) if c.is_ascii_digit() => {
                    self.bytes()?;
                }
                _ => return Err(bad("invalid value")),
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }

    /// Reads a dictionary, calling `f(key, reader)` for each entry; `f`
    /// must consume exactly the value (or call `skip`).
    fn dict(
        &mut self,
        mut f: impl FnMut(&'a [u8], &mut Reader<'a>) -> Result<(), ParseError>,
    ) -> Result<(), ParseError> {
        if self.peek() != Some(b'd') {
            return Err(bad("expected a dictionary"));
        }
        self.pos += 1;
        // Each entry consumes at least 3 bytes, so the input bounds the loop.
        while self.pos < self.buf.len() {
            if self.peek() == Some(b'e') {
                self.pos += 1;
                return Ok(());
            }
            let key = self.bytes()?;
            f(key, self)?;
        }
        Err(bad("dictionary not closed"))
    }

    /// Reads a list, calling `f` for each item (which must consume it).
    fn list(
        &mut self,
        mut f: impl FnMut(&mut Reader<'a>) -> Result<(), ParseError>,
    ) -> Result<(), ParseError> {
        if self.peek() != Some(b'l') {
            return Err(bad("expected a list"));
        }
        self.pos += 1;
        while self.pos < self.buf.len() {
            if self.peek() == Some(b'e') {
                self.pos += 1;
                return Ok(());
            }
            f(self)?;
        }
        Err(bad("list not closed"))
    }
}

/// The raw fields of a message before they are checked together.
#[derive(Default)]
struct Raw<'a> {
    t: Option<&'a [u8]>,
    y: Option<&'a [u8]>,
    q: Option<&'a [u8]>,
    a: Option<Args<'a>>,
    r: Option<Args<'a>>,
    e: Option<(i64, &'a [u8])>,
    ip: Option<&'a [u8]>,
    ro: bool,
    v: Option<&'a [u8]>,
}

/// The fields of `a` or `r` we use.
#[derive(Default)]
struct Args<'a> {
    id: Option<&'a [u8]>,
    target: Option<&'a [u8]>,
    info_hash: Option<&'a [u8]>,
    token: Option<&'a [u8]>,
    port: Option<i64>,
    implied_port: Option<i64>,
    want: Option<Want>,
    nodes: Option<&'a [u8]>,
    nodes6: Option<&'a [u8]>,
    values: Vec<&'a [u8]>,
}

fn read_args<'a>(rd: &mut Reader<'a>) -> Result<Args<'a>, ParseError> {
    let mut args = Args::default();
    rd.dict(|key, rd| {
        match key {
            b"id" => args.id = Some(rd.bytes()?),
            b"target" => args.target = Some(rd.bytes()?),
            b"info_hash" => args.info_hash = Some(rd.bytes()?),
            b"token" => args.token = Some(rd.bytes()?),
            b"port" => args.port = Some(rd.int()?),
            b"implied_port" => args.implied_port = Some(rd.int()?),
            b"nodes" => args.nodes = Some(rd.bytes()?),
            b"nodes6" => args.nodes6 = Some(rd.bytes()?),
            b"want" => {
                let mut want = Want::default();
                rd.list(|rd| {
                    match rd.peek() {
                        Some(c) if c.is_ascii_digit() => match rd.bytes()? {
                            b"n4" => want.n4 = true,
                            b"n6" => want.n6 = true,
                            _ => {}
                        },
                        _ => rd.skip()?,
                    }
                    Ok(())
                })?;
                args.want = Some(want);
            }
            b"values" => {
                args.values.clear();
                rd.list(|rd| {
                    match rd.peek() {
                        Some(c) if c.is_ascii_digit() => {
                            let v = rd.bytes()?;
                            if args.values.len() < MAX_VALUES {
                                args.values.push(v);
                            }
                        }
                        _ => rd.skip()?,
                    }
                    Ok(())
                })?;
            }
            _ => rd.skip()?,
        }
        Ok(())
    })?;
    Ok(args)
}

fn read_raw(bytes: &[u8]) -> Result<Raw<'_>, ParseError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(bad("datagram too large"));
    }
    let mut rd = Reader { buf: bytes, pos: 0 };
    let mut raw = Raw::default();
    rd.dict(|key, rd| {
        match key {
            b"t" => raw.t = Some(rd.bytes()?),
            b"y" => raw.y = Some(rd.bytes()?),
            b"q" => raw.q = Some(rd.bytes()?),
            b"a" => raw.a = Some(read_args(rd)?),
            b"r" => raw.r = Some(read_args(rd)?),
            b"ip" => raw.ip = Some(rd.bytes()?),
            b"v" => raw.v = Some(rd.bytes()?),
            b"ro" => raw.ro = rd.int()? == 1,
            b"e" => {
                let mut code = None;
                let mut msg: &[u8] = b"";
                let mut n = 0;
                rd.list(|rd| {
                    match (n, rd.peek()) {
                        (0, Some(b'i')) => code = Some(rd.int()?),
                        (1, Some(c)) if c.is_ascii_digit() => msg = rd.bytes()?,
                        _ => rd.skip()?,
                    }
                    n += 1;
                    Ok(())
                })?;
                raw.e = Some((code.unwrap_or(ERR_GENERIC), msg));
            }
            _ => rd.skip()?,
        }
        Ok(())
    })?;
    // Trailing bytes after the message are ignored, as libtorrent does.
    Ok(raw)
}

fn node_id(b: Option<&[u8]>) -> Option<NodeId> {
    let arr: [u8; 20] = b?.try_into().ok()?;
    Some(NodeId(arr))
}

/// A compact peer (6 bytes IPv4, 18 bytes IPv6: address then port, BEP 5/32).
pub fn parse_compact_addr(b: &[u8]) -> Option<SocketAddr> {
    match b.len() {
        6 => {
            let ip: [u8; 4] = b.get(..4)?.try_into().ok()?;
            let port = u16::from_be_bytes(b.get(4..6)?.try_into().ok()?);
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        18 => {
            let ip: [u8; 16] = b.get(..16)?.try_into().ok()?;
            let port = u16::from_be_bytes(b.get(16..18)?.try_into().ok()?);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

pub fn emit_compact_addr(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Compact node info: 26-byte (IPv4) or 38-byte (IPv6) records; a partial
/// record at the end is ignored; at most [`MAX_NODES`] are kept.
pub fn parse_nodes(b: &[u8], v6: bool) -> Vec<(NodeId, SocketAddr)> {
    let size = if v6 { 38 } else { 26 };
    b.chunks_exact(size)
        .take(MAX_NODES)
        .filter_map(|rec| {
            let (id, addr) = rec.split_at_checked(20)?;
            Some((node_id(Some(id))?, parse_compact_addr(addr)?))
        })
        .collect()
}

pub fn emit_nodes(nodes: &[(NodeId, SocketAddr)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * 38);
    for (id, addr) in nodes {
        out.extend_from_slice(&id.0);
        emit_compact_addr(addr, &mut out);
    }
    out
}

fn with_tid(tid: &[u8], mut e: ParseError) -> ParseError {
    e.query_tid = Some(tid.to_vec());
    e
}

impl Message {
    /// Parses one datagram. See the module's no-panic contract and limits.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let raw = read_raw(bytes)?;
        let tid = raw.t.ok_or(bad("no transaction id"))?;
        if tid.is_empty() || tid.len() > MAX_TID {
            return Err(bad("bad transaction id"));
        }
        let ip = raw.ip.and_then(parse_compact_addr);
        let version = raw.v.filter(|v| v.len() <= MAX_VERSION).map(<[u8]>::to_vec);
        let body = match raw.y {
            Some(b"q") => {
                let q = raw.q.ok_or(with_tid(tid, bad("query without a method")))?;
                let a = raw.a.ok_or(with_tid(tid, bad("query without arguments")))?;
                let id = node_id(a.id).ok_or(with_tid(tid, bad("query without a valid id")))?;
                let query = match q {
                    b"ping" => Query::Ping,
                    b"find_node" => Query::FindNode {
                        target: node_id(a.target)
                            .ok_or(with_tid(tid, bad("find_node without a valid target")))?,
                        want: a.want,
                    },
                    b"get_peers" => Query::GetPeers {
                        info_hash: node_id(a.info_hash)
                            .ok_or(with_tid(tid, bad("get_peers without a valid info_hash")))?
                            .0,
                        want: a.want,
                    },
                    b"announce_peer" => {
                        let info_hash = node_id(a.info_hash)
                            .ok_or(with_tid(
                                tid,
                                bad("announce_peer without a valid info_hash"),
                            ))?
                            .0;
                        let implied_port = a.implied_port.unwrap_or(0) != 0;
                        let port = match a.port.map(u16::try_from) {
                            Some(Ok(p)) => p,
                            _ if implied_port => 0,
                            _ => return Err(with_tid(tid, bad("announce_peer without a port"))),
                        };
                        let token = a
                            .token
                            .filter(|t| t.len() <= MAX_TOKEN)
                            .ok_or(with_tid(tid, bad("announce_peer without a token")))?;
                        Query::AnnouncePeer {
                            info_hash,
                            port,
                            implied_port,
                            token: token.to_vec(),
                        }
                    }
                    _ => {
                        let mut e = with_tid(tid, bad("unknown method"));
                        e.code = ERR_METHOD;
                        return Err(e);
                    }
                };
                Body::Query { id, query }
            }
            Some(b"r") => {
                let r = raw.r.ok_or(bad("response without values"))?;
                let id = node_id(r.id).ok_or(bad("response without a valid id"))?;
                let response = Response {
                    nodes: r.nodes.map(|b| parse_nodes(b, false)).unwrap_or_default(),
                    nodes6: r.nodes6.map(|b| parse_nodes(b, true)).unwrap_or_default(),
                    values: r
                        .values
                        .iter()
                        .filter_map(|v| parse_compact_addr(v))
                        .collect(),
                    token: r.token.filter(|t| t.len() <= MAX_TOKEN).map(<[u8]>::to_vec),
                };
                Body::Response { id, response }
            }
            Some(b"e") => {
                let (code, msg) = raw.e.unwrap_or((ERR_GENERIC, b""));
                Body::Error {
                    code,
                    message: msg.get(..MAX_ERROR_MSG).unwrap_or(msg).to_vec(),
                }
            }
            _ => return Err(bad("unknown message type")),
        };
        Ok(Message {
            tid: tid.to_vec(),
            body,
            ip,
            read_only: raw.ro,
            version,
        })
    }

    /// Canonical bencode (sorted keys): a query carries `ro` when
    /// `read_only`; a response carries `ip` when set.
    pub fn emit(&self) -> Vec<u8> {
        let mut top = Value::dict();
        top.insert("t", Value::Bytes(self.tid.clone()));
        if let Some(v) = &self.version {
            top.insert("v", Value::Bytes(v.clone()));
        }
        if let Some(ip) = &self.ip {
            let mut b = Vec::new();
            emit_compact_addr(ip, &mut b);
            top.insert("ip", Value::Bytes(b));
        }
        if self.read_only {
            top.insert("ro", Value::Int(1));
        }
        match &self.body {
            Body::Query { id, query } => {
                top.insert("y", Value::str("q"));
                top.insert("q", Value::str(query.method()));
                let mut a = Value::dict();
                a.insert("id", Value::Bytes(id.0.to_vec()));
                let want = match query {
                    Query::Ping => None,
                    Query::FindNode { target, want } => {
                        a.insert("target", Value::Bytes(target.0.to_vec()));
                        *want
                    }
                    Query::GetPeers { info_hash, want } => {
                        a.insert("info_hash", Value::Bytes(info_hash.to_vec()));
                        *want
                    }
                    Query::AnnouncePeer {
                        info_hash,
                        port,
                        implied_port,
                        token,
                    } => {
                        a.insert("info_hash", Value::Bytes(info_hash.to_vec()));
                        a.insert("port", Value::Int(i64::from(*port)));
                        a.insert("implied_port", Value::Int(i64::from(*implied_port)));
                        a.insert("token", Value::Bytes(token.clone()));
                        None
                    }
                };
                if let Some(w) = want {
                    let mut l = Vec::new();
                    if w.n4 {
                        l.push(Value::str("n4"));
                    }
                    if w.n6 {
                        l.push(Value::str("n6"));
                    }
                    a.insert("want", Value::List(l));
                }
                top.insert("a", a);
            }
            Body::Response { id, response } => {
                top.insert("y", Value::str("r"));
                let mut r = Value::dict();
                r.insert("id", Value::Bytes(id.0.to_vec()));
                if !response.nodes.is_empty() {
                    r.insert("nodes", Value::Bytes(emit_nodes(&response.nodes)));
                }
                if !response.nodes6.is_empty() {
                    r.insert("nodes6", Value::Bytes(emit_nodes(&response.nodes6)));
                }
                if let Some(t) = &response.token {
                    r.insert("token", Value::Bytes(t.clone()));
                }
                if !response.values.is_empty() {
                    let l = response
                        .values
                        .iter()
                        .map(|a| {
                            let mut b = Vec::new();
                            emit_compact_addr(a, &mut b);
                            Value::Bytes(b)
                        })
                        .collect();
                    r.insert("values", Value::List(l));
                }
                top.insert("r", r);
            }
            Body::Error { code, message } => {
                top.insert("y", Value::str("e"));
                top.insert(
                    "e",
                    Value::List(vec![Value::Int(*code), Value::Bytes(message.clone())]),
                );
            }
        }
        top.to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 20])
    }

    fn msg(body: Body) -> Message {
        Message {
            tid: b"aa".to_vec(),
            body,
            ip: None,
            read_only: false,
            version: None,
        }
    }

    #[test]
    fn bep5_examples_parse() {
        let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        let m = Message::parse(ping).unwrap();
        assert_eq!(m.tid, b"aa");
        assert_eq!(
            m.body,
            Body::Query {
                id: NodeId(*b"abcdefghij0123456789"),
                query: Query::Ping
            }
        );
        // Emit is canonical and equal to the BEP's bytes.
        assert_eq!(m.emit(), ping.to_vec());
        let resp = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re";
        assert_eq!(Message::parse(resp).unwrap().emit(), resp.to_vec());
        let err = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
        let m = Message::parse(err).unwrap();
        assert_eq!(
            m.body,
            Body::Error {
                code: 201,
                message: b"A Generic Error Ocurred".to_vec()
            }
        );
        assert_eq!(m.emit(), err.to_vec());
        let ann = b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe";
        let m = Message::parse(ann).unwrap();
        assert_eq!(m.emit(), ann.to_vec());
    }

    #[test]
    fn lenient_unsorted_unknown_keys_and_long_tid() {
        let b = b"d1:y1:q1:t5:abcde1:q9:find_node1:v4:LT\x01\x021:zli1eli2eee1:ad6:target20:mnopqrstuvwxyz1234562:id20:abcdefghij01234567894:wantl2:n62:n4ee2:xxi0eee";
        let m = Message::parse(b).unwrap();
        assert_eq!(m.tid, b"abcde");
        assert_eq!(m.version.as_deref(), Some(&b"LT\x01\x02"[..]));
        match m.body {
            Body::Query {
                query: Query::FindNode { want, .. },
                ..
            } => assert_eq!(want, Some(Want { n4: true, n6: true })),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_trips() {
        let v4: SocketAddr = "1.2.3.4:5".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:6881".parse().unwrap();
        let cases = vec![
            Body::Query {
                id: id(1),
                query: Query::FindNode {
                    target: id(2),
                    want: Some(Want {
                        n4: true,
                        n6: false,
                    }),
                },
            },
            Body::Query {
                id: id(1),
                query: Query::GetPeers {
                    info_hash: [3; 20],
                    want: None,
                },
            },
            Body::Query {
                id: id(1),
                query: Query::AnnouncePeer {
                    info_hash: [3; 20],
                    port: 6881,
                    implied_port: false,
                    token: b"tok".to_vec(),
                },
            },
            Body::Response {
                id: id(9),
                response: Response {
                    nodes: vec![(id(4), v4)],
                    nodes6: vec![(id(5), v6)],
                    values: vec![v4, v6],
                    token: Some(b"xyz".to_vec()),
                },
            },
            Body::Error {
                code: ERR_METHOD,
                message: b"Method Unknown".to_vec(),
            },
        ];
        for body in cases {
            let mut m = msg(body);
            m.ip = Some(v4);
            m.version = Some(VERSION.to_vec());
            m.read_only = true;
            let bytes = m.emit();
            assert!(crate::bencode::decode(&bytes, crate::bencode::Limits::MESSAGE).is_ok());
            assert_eq!(Message::parse(&bytes).unwrap(), m);
        }
    }

    #[test]
    fn hostile_inputs_are_errors() {
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"d".to_vec(),
            b"de".to_vec(),
            b"le".to_vec(),
            b"d1:t99999999999:ae".to_vec(),
            b"d1:ti1e1:y1:qe".to_vec(),
            b"d1:t2:aa1:y1:q1:q4:ping1:ad2:id3:abcee".to_vec(),
            b"d1:t0:1:y1:re".to_vec(),
            b"d1:t17:aaaaaaaaaaaaaaaaa1:y1:re".to_vec(),
            b"i99999999999999999999999e".to_vec(),
            b"d1:t2:aa1:y1:r1:rd2:id20:abcdefghij0123456789".to_vec(),
            [b"d1:x".as_slice(), &[b'l'; 100], &[b'e'; 100], b"e"].concat(),
            [b"d1:x".as_slice(), &[b'l'; 100_000]].concat(),
            vec![b'd'; MAX_DATAGRAM + 1],
        ];
        for c in &cases {
            assert!(
                Message::parse(c).is_err(),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        // Every prefix of a valid message is an error or a message, never a panic.
        let ann = b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe";
        for i in 0..ann.len() {
            assert!(Message::parse(&ann[..i]).is_err());
        }
    }

    #[test]
    fn bad_queries_name_their_tid_and_code() {
        let e = Message::parse(b"d1:ad2:id20:abcdefghij0123456789e1:q4:pong1:t2:xy1:y1:qe")
            .unwrap_err();
        assert_eq!(e.query_tid.as_deref(), Some(&b"xy"[..]));
        assert_eq!(e.code, ERR_METHOD);
        let e = Message::parse(b"d1:ad2:id2:abe1:q4:ping1:t2:xy1:y1:qe").unwrap_err();
        assert_eq!(e.code, ERR_PROTOCOL);
        assert_eq!(e.query_tid.as_deref(), Some(&b"xy"[..]));
    }

    #[test]
    fn compact_nodes_ignore_partial_records() {
        let v4: SocketAddr = "9.8.7.6:1234".parse().unwrap();
        let mut b = emit_nodes(&[(id(7), v4), (id(8), v4)]);
        b.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse_nodes(&b, false), vec![(id(7), v4), (id(8), v4)]);
        assert_eq!(parse_nodes(&b[..25], false), vec![]);
    }
}
