//! `proxy-multi.conf`, the middle-end list Telegram publishes (docs/protocol.md §5.2).
//!
//! ```text
//! # comment to end of line
//! default 2;
//! proxy_for 2 149.154.161.144:8888;
//! proxy_for -2 [2001:67c:4e8:f002::d]:80;
//! ```
//! Statements end with `;`, whitespace and newlines are free. Besides `proxy_for` and
//! `default`, the official parser's `proxy`, `timeout`, `min_connections` and
//! `max_connections` are accepted (the last three are settings of the official binary and do
//! not change what we connect to). Unlike the official parser, lines of one cluster need not be
//! consecutive: they are merged. Targets must be IP literals, as Telegram publishes them.

use std::net::SocketAddr;

/// A parsed file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyMultiConf {
    /// Cluster for DC ids the file does not list.
    pub default: Option<i16>,
    /// `(cluster id, addresses)` in file order.
    pub clusters: Vec<(i16, Vec<SocketAddr>)>,
}

/// A file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ConfError {
    pub line: usize,
    pub message: String,
}

impl ProxyMultiConf {
    /// The addresses for `dc`: its own cluster, else the default cluster.
    pub fn targets(&self, dc: i16) -> Option<&[SocketAddr]> {
        let find = |id: i16| self.clusters.iter().find(|(c, _)| *c == id).map(|(_, a)| a.as_slice());
        find(dc).or_else(|| self.default.and_then(find))
    }

    /// The cluster that serves `dc` (its own id if listed, else the default).
    pub fn cluster_of(&self, dc: i16) -> Option<i16> {
        if self.clusters.iter().any(|(c, _)| *c == dc) {
            Some(dc)
        } else {
            self.default.filter(|d| self.clusters.iter().any(|(c, _)| c == d))
        }
    }

    /// Add the clusters of `other` (the IPv6 file to the IPv4 one); `default` is kept unless
    /// unset here.
    pub fn merge(&mut self, other: &ProxyMultiConf) {
        for (id, addrs) in &other.clusters {
            self.add(*id, addrs);
        }
        if self.default.is_none() {
            self.default = other.default;
        }
    }

    fn add(&mut self, id: i16, addrs: &[SocketAddr]) {
        match self.clusters.iter_mut().find(|(c, _)| *c == id) {
            Some((_, list)) => {
                for a in addrs {
                    if !list.contains(a) {
                        list.push(*a);
                    }
                }
            }
            None => self.clusters.push((id, addrs.to_vec())),
        }
    }

    /// Render in the file's own syntax (for the cache and for tests).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        if let Some(d) = self.default {
            s.push_str(&format!("default {d};\n"));
        }
        for (id, addrs) in &self.clusters {
            for a in addrs {
                s.push_str(&format!("proxy_for {id} {a};\n"));
            }
        }
        s
    }
}

fn dc_id(word: &str, line: usize) -> Result<i16, ConfError> {
    word.parse::<i16>().map_err(|_| ConfError { line, message: format!("`{word}` is not a DC id (a number from -32768 to 32767)") })
}

fn target(word: &str, line: usize) -> Result<SocketAddr, ConfError> {
    word.parse::<SocketAddr>()
        .map_err(|_| ConfError { line, message: format!("`{word}` is not an address with a port (write 1.2.3.4:8888 or [2001:db8::1]:8888)") })
}

/// Parse the text of a `proxy-multi.conf` file. A file without any target is an error: an
/// empty or truncated download must not replace a working list.
pub fn parse(text: &str) -> Result<ProxyMultiConf, ConfError> {
    let mut conf = ProxyMultiConf::default();
    let mut stmt = String::new();
    let mut stmt_line = 1;
    let mut line = 1;
    let mut in_comment = false;
    for ch in text.chars() {
        if ch == '\n' {
            line += 1;
            in_comment = false;
            stmt.push(' ');
            continue;
        }
        if in_comment {
            continue;
        }
        match ch {
            '#' => in_comment = true,
            ';' => {
                statement(&stmt, stmt_line, &mut conf)?;
                stmt.clear();
            }
            c => {
                if stmt.trim().is_empty() && !c.is_whitespace() {
                    stmt_line = line;
                }
                stmt.push(c);
            }
        }
    }
    if !stmt.trim().is_empty() {
        return Err(ConfError { line: stmt_line, message: "statement without a closing `;`".into() });
    }
    if conf.clusters.is_empty() {
        return Err(ConfError { line, message: "no `proxy_for` statement: the file lists no middle-end".into() });
    }
    Ok(conf)
}

fn statement(stmt: &str, line: usize, conf: &mut ProxyMultiConf) -> Result<(), ConfError> {
    let words: Vec<&str> = stmt.split_whitespace().collect();
    let arity = |n: usize| {
        if words.len() == n {
            Ok(())
        } else {
            Err(ConfError { line, message: format!("`{}` takes {} value(s), found {}", words[0], n - 1, words.len() - 1) })
        }
    };
    match words.first().copied() {
        None => Ok(()),
        Some("proxy_for") => {
            arity(3)?;
            let id = dc_id(words[1], line)?;
            let a = target(words[2], line)?;
            conf.add(id, &[a]);
            Ok(())
        }
        Some("proxy") => {
            arity(2)?;
            let a = target(words[1], line)?;
            conf.add(0, &[a]);
            Ok(())
        }
        Some("default") => {
            arity(2)?;
            conf.default = Some(dc_id(words[1], line)?);
            Ok(())
        }
        Some("timeout" | "min_connections" | "max_connections") => {
            arity(2)?;
            words[1].parse::<u32>().map(|_| ()).map_err(|_| ConfError { line, message: format!("`{}` needs a number, found `{}`", words[0], words[1]) })
        }
        Some(other) => Err(ConfError {
            line,
            message: format!("unknown statement `{other}` (expected proxy_for, default, proxy, timeout, min_connections or max_connections)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# force_probability 10 10\ndefault 2;\nproxy_for 1 149.154.175.50:8888;\nproxy_for -1 149.154.175.50:8888;\n\
proxy_for 2 149.154.161.144:8888;\nproxy_for -2 149.154.161.184:8888;\nproxy_for 203 91.105.192.110:443;\n\
proxy_for 5 91.108.56.152:8888;\nproxy_for 5 91.108.56.103:8888;\n";

    #[test]
    fn reference_sample() {
        let c = parse(SAMPLE).unwrap();
        assert_eq!(c.default, Some(2));
        assert_eq!(c.clusters.len(), 6);
        assert_eq!(c.targets(5).unwrap(), &["91.108.56.152:8888".parse().unwrap(), "91.108.56.103:8888".parse().unwrap()][..]);
        assert_eq!(c.targets(-2).unwrap(), &["149.154.161.184:8888".parse().unwrap()][..]);
        // Unknown ids go to the default cluster (docs/protocol.md §7.2: dc 9999 served by default).
        assert_eq!(c.targets(9999).unwrap(), &["149.154.161.144:8888".parse().unwrap()][..]);
        assert_eq!(c.cluster_of(9999), Some(2));
        assert_eq!(parse(&c.to_text()).unwrap(), c);
    }

    #[test]
    fn ipv6_merge_and_free_layout() {
        let v6 = parse("proxy_for 1 [2001:b28:f23d:f001::d]:8888; proxy_for 2\n[2001:67c:04e8:f002::d]:80 ;").unwrap();
        let mut c = parse(SAMPLE).unwrap();
        c.merge(&v6);
        assert_eq!(c.targets(2).unwrap().len(), 2);
        assert_eq!(c.targets(2).unwrap()[1], "[2001:67c:4e8:f002::d]:80".parse().unwrap());
    }

    #[test]
    fn errors_carry_lines() {
        assert_eq!(parse("default 2;\nproxy_for x 1.2.3.4:1;").unwrap_err().line, 2);
        assert!(parse("proxy_for 1 host.example:8888;").unwrap_err().message.contains("not an address"));
        assert!(parse("proxy_for 1 1.2.3.4:1").unwrap_err().message.contains("closing"));
        assert!(parse("# nothing\n").unwrap_err().message.contains("no `proxy_for`"));
        assert!(parse("<html>;").unwrap_err().message.contains("unknown statement"));
        assert!(parse("timeout 100; proxy_for 1 1.2.3.4:1 5;").unwrap_err().message.contains("takes 2"));
    }
}
