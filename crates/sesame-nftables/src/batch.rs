//! One nf_tables transaction (a netlink batch) under construction.

use std::net::IpAddr;
use std::time::Duration;

use sesame_core::engine::ruleset::Ruleset;
use sesame_core::Service;

use crate::gateway::{
    forward_rules, inner_elements, postnat_rules, prenat_rules, ForwardElements, MapEntry,
    CHAIN_FORWARD, CHAIN_POSTNAT, CHAIN_PRENAT, FORWARD_CHAINS, FORWARD_SETS,
};
use crate::rules::*;
use crate::sys::*;
use crate::wire::Writer;

/// `NFTA_TABLE_FLAGS`.
pub(crate) const NFTA_TABLE_FLAGS: u16 = 2;
/// Only the owning socket may change or delete the table; `nft flush
/// ruleset` by anyone else leaves it alone (Linux 5.12).
pub(crate) const NFT_TABLE_F_OWNER: u32 = 2;
/// An owned table outlives its owner (fail closed) and is taken over by
/// the next one (Linux 6.9).
pub(crate) const NFT_TABLE_F_PERSIST: u32 = 4;

/// Elements per `NEWSETELEM` message: 1024 of the largest keys (IPv6 grants
/// with a timeout, 48 bytes each) stay well inside a 64 KiB attribute.
pub(crate) const ELEMENTS_PER_MESSAGE: usize = 1024;

/// One message of a batch, with a description for error reports.
pub(crate) struct Pending {
    pub(crate) seq: u32,
    pub(crate) op: String,
}

/// Builds one nf_tables transaction.
pub(crate) struct Batch<'a> {
    w: Writer,
    table: &'a str,
    /// `NFTA_TABLE_FLAGS` of the table this batch creates or updates.
    pub(crate) table_flags: u32,
    begin_seq: u32,
    seq: u32,
    pub(crate) msgs: Vec<Pending>,
}

impl<'a> Batch<'a> {
    /// Starts a batch whose messages are numbered after `last_seq`.
    pub(crate) fn new(table: &'a str, last_seq: u32) -> Self {
        let mut w = Writer::new();
        let seq = last_seq.wrapping_add(1);
        w.message(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
            |_| {},
        );
        Self {
            w,
            table,
            table_flags: 0,
            begin_seq: seq,
            seq,
            msgs: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, msg: u8, flags: u16, op: String, body: impl FnOnce(&mut Writer)) {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.w.message(
            (NFNL_SUBSYS_NFTABLES << 8) | u16::from(msg),
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            NFPROTO_INET,
            0,
            body,
        );
        self.msgs.push(Pending { seq, op });
    }

    pub(crate) fn new_table(&mut self) {
        let t = self.table;
        let flags = self.table_flags;
        self.push(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            format!("create table {t}"),
            |w| {
                w.put_str(NFTA_TABLE_NAME, t);
                if flags != 0 {
                    w.put_be32(NFTA_TABLE_FLAGS, flags);
                }
            },
        );
    }

    pub(crate) fn del_table(&mut self) {
        let t = self.table;
        self.push(NFT_MSG_DELTABLE, 0, format!("delete table {t}"), |w| {
            w.put_str(NFTA_TABLE_NAME, t)
        });
    }

    pub(crate) fn new_set(&mut self, s: &SetSpec, id: u32) {
        let t = self.table;
        self.push(
            NFT_MSG_NEWSET,
            NLM_F_CREATE,
            format!("create set {}", s.name),
            |w| set_attrs(w, t, s, id),
        );
    }

    pub(crate) fn flush_set(&mut self, set: &'static str) {
        let t = self.table;
        self.push(NFT_MSG_DELSETELEM, 0, format!("flush set {set}"), |w| {
            w.put_str(NFTA_SET_ELEM_LIST_TABLE, t);
            w.put_str(NFTA_SET_ELEM_LIST_SET, set);
        });
    }

    /// Adds (or, with `del`, removes) elements; `timeout` is per element.
    pub(crate) fn elements(
        &mut self,
        set: &'static str,
        keys: &[Vec<u8>],
        timeout: Option<Duration>,
        del: bool,
    ) {
        if keys.is_empty() {
            return;
        }
        let t = self.table;
        let (msg, flags, verb) = if del {
            (NFT_MSG_DELSETELEM, 0, "delete")
        } else {
            (NFT_MSG_NEWSETELEM, NLM_F_CREATE, "add")
        };
        // The element list is one attribute with a 16-bit length, so a
        // large set (a TOTP range, a guard) goes in several messages of the
        // same batch: still one transaction.
        for chunk in keys.chunks(ELEMENTS_PER_MESSAGE) {
            let op = format!("{verb} {} element(s) in set {set}", chunk.len());
            self.push(msg, flags, op, |w| {
                w.put_str(NFTA_SET_ELEM_LIST_TABLE, t);
                w.put_str(NFTA_SET_ELEM_LIST_SET, set);
                w.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |w| {
                    for key in chunk {
                        w.nest(NFTA_LIST_ELEM, |w| {
                            w.nest(NFTA_SET_ELEM_KEY, |w| w.put(NFTA_DATA_VALUE, key));
                            if let Some(ttl) = timeout {
                                w.put_be64(NFTA_SET_ELEM_TIMEOUT, timeout_ms(ttl));
                            }
                        });
                    }
                });
            });
        }
    }

    /// Adds map elements (key and data); `timeout` is per element.
    pub(crate) fn map_elements(
        &mut self,
        map: &'static str,
        entries: &[MapEntry],
        timeout: Option<Duration>,
    ) {
        if entries.is_empty() {
            return;
        }
        let t = self.table;
        for chunk in entries.chunks(ELEMENTS_PER_MESSAGE) {
            let op = format!("add {} element(s) in map {map}", chunk.len());
            self.push(NFT_MSG_NEWSETELEM, NLM_F_CREATE, op, |w| {
                w.put_str(NFTA_SET_ELEM_LIST_TABLE, t);
                w.put_str(NFTA_SET_ELEM_LIST_SET, map);
                w.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |w| {
                    for (key, data) in chunk {
                        w.nest(NFTA_LIST_ELEM, |w| {
                            w.nest(NFTA_SET_ELEM_KEY, |w| w.put(NFTA_DATA_VALUE, key));
                            w.nest(NFTA_SET_ELEM_DATA, |w| w.put(NFTA_DATA_VALUE, data));
                            if let Some(ttl) = timeout {
                                w.put_be64(NFTA_SET_ELEM_TIMEOUT, timeout_ms(ttl));
                            }
                        });
                    }
                });
            });
        }
    }

    /// A grant's forward elements: added with `ttl`, refreshed to it when
    /// present (add, delete, add: one transaction); with `ttl` `None`,
    /// removed whether present or not (add for a millisecond, delete).
    pub(crate) fn forward_elements(&mut self, e: &ForwardElements, ttl: Option<Duration>) {
        let first = ttl.unwrap_or(Duration::from_millis(1));
        for (map, entries) in &e.maps {
            let keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| k.clone()).collect();
            self.map_elements(map, entries, Some(first));
            self.elements(map, &keys, None, true);
            if ttl.is_some() {
                self.map_elements(map, entries, ttl);
            }
        }
        for (set, keys) in &e.sets {
            self.elements(set, keys, Some(first), false);
            self.elements(set, keys, None, true);
            if ttl.is_some() {
                self.elements(set, keys, ttl, false);
            }
        }
    }

    pub(crate) fn new_chain(&mut self, c: &ChainSpec) {
        let t = self.table;
        self.push(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            format!("create chain {}", c.name),
            |w| chain_attrs(w, t, c),
        );
    }

    pub(crate) fn flush_chain(&mut self, chain: &'static str) {
        let t = self.table;
        self.push(NFT_MSG_DELRULE, 0, format!("flush chain {chain}"), |w| {
            w.put_str(NFTA_RULE_TABLE, t);
            w.put_str(NFTA_RULE_CHAIN, chain);
        });
    }

    pub(crate) fn new_rule(&mut self, chain: &'static str, n: usize, exprs: &[Expr]) {
        let t = self.table;
        let op = format!("add rule #{n} to chain {chain}");
        self.push(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, op, |w| {
            rule_attrs(w, t, chain, exprs)
        });
    }

    /// Sets, chains and rules of `rules`, assuming an empty or compatible table.
    pub(crate) fn ruleset(&mut self, rules: &Ruleset, flush: bool) {
        self.new_table();
        for (id, s) in (1..).zip(&SETS) {
            self.new_set(s, id);
        }
        for (set, keys) in config_elements(rules) {
            if flush {
                self.flush_set(set);
            }
            self.elements(set, &keys, None, false);
        }
        for c in &CHAINS {
            self.new_chain(c);
            if flush {
                self.flush_chain(c.name);
            }
        }
        for (n, r) in observe_rules(rules).iter().enumerate() {
            self.new_rule(CHAIN_OBSERVE, n + 1, r);
        }
        for (n, r) in gate_rules().iter().enumerate() {
            self.new_rule(CHAIN_GATE, n + 1, r);
        }
        // Gateway mode only where it is used: a host that forwards nothing
        // needs no NAT in its kernel.
        if rules.forwards.is_empty() && !rules.gateway {
            return;
        }
        for (id, s) in (100..).zip(&FORWARD_SETS) {
            self.new_set(s, id);
        }
        for (set, keys) in inner_elements(rules) {
            if flush {
                self.flush_set(set);
            }
            self.elements(set, &keys, None, false);
        }
        for c in &FORWARD_CHAINS {
            self.new_chain(c);
            if flush {
                self.flush_chain(c.name);
            }
        }
        for (n, r) in prenat_rules().iter().enumerate() {
            self.new_rule(CHAIN_PRENAT, n + 1, r);
        }
        for (n, r) in forward_rules().iter().enumerate() {
            self.new_rule(CHAIN_FORWARD, n + 1, r);
        }
        for (n, r) in postnat_rules().iter().enumerate() {
            self.new_rule(CHAIN_POSTNAT, n + 1, r);
        }
    }

    /// Closes the batch: its bytes, its acknowledged messages, the
    /// `BATCH_BEGIN` sequence number and the last one used; `None` for the
    /// bytes when an attribute overflowed.
    pub(crate) fn finish(mut self) -> (Option<Vec<u8>>, Vec<Pending>, u32, u32) {
        self.seq = self.seq.wrapping_add(1);
        self.w.message(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            self.seq,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
            |_| {},
        );
        let bytes = (!self.w.overflowed()).then(|| self.w.into_bytes());
        (bytes, self.msgs, self.begin_seq, self.seq)
    }
}

/// Element timeout in milliseconds; the kernel needs at least 1.
pub(crate) fn timeout_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Grant-set keys of `addr` for `services`.
pub(crate) fn grant_keys(addr: IpAddr, services: &[Service]) -> (&'static str, Vec<Vec<u8>>) {
    let (set, prefix) = grant_set_for(addr);
    (
        set,
        services.iter().map(|s| grant_key(&prefix, s)).collect(),
    )
}
