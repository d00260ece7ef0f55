use std::path::PathBuf;

use super::*;
use crate::config::{self, ConfigError, Source};

const SAMPLES: &str = "tests/keepalived-samples";

fn import_text(text: &str) -> Import {
    let dir = std::env::temp_dir().join(format!(
        "lvs-kimport-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keepalived.conf");
    std::fs::write(&path, text).unwrap();
    let import = import(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    import
}

fn samples() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(SAMPLES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("keepalived.conf.") && !name.ends_with(".expected")
        })
        .collect();
    paths.sort();
    paths
}

/// Each of keepalived's samples imports to what its `.expected` file
/// holds: the TOML, then each error and warning.
#[test]
fn keepalived_samples_import_as_expected() {
    let bless = std::env::var_os("LVS_BLESS").is_some();
    let mut mismatched = Vec::new();
    for path in samples() {
        let import = import(&path);
        let mut got = import.toml.clone();
        for e in &import.errors {
            got += &format!("# error: {e}\n");
        }
        for w in &import.warnings {
            got += &format!("# warning: {w}\n");
        }
        let expected_path = PathBuf::from(format!("{}.expected", path.display()));
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            mismatched.push(format!("{}:\n{got}", path.display()));
        }
    }
    assert!(mismatched.is_empty(), "{}", mismatched.join("\n"));
}

/// What converts is a configuration lvsd loads; every diagnostic points
/// at a line of a sample.
#[test]
fn keepalived_samples_load_or_name_their_lines() {
    for path in samples() {
        let import = import(&path);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        for d in import.errors.iter().chain(&import.warnings) {
            assert_eq!(&*d.at.file, path.as_path(), "{d}");
            assert!((1..=lines).contains(&d.at.line), "{d}");
        }
        let name = path.display().to_string();
        config::parse(&import.toml, &name)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", import.toml));
        let loaded = Source::Keepalived(path.clone()).load();
        assert_eq!(
            loaded.is_ok(),
            import.errors.is_empty(),
            "{name}: {loaded:?}"
        );
    }
}

/// The value of `key` in the `n`th table headed `header` of `toml`.
fn value(toml: &str, header: &str, n: usize, key: &str) -> Option<String> {
    let table = toml.split(&format!("\n{header}\n")).nth(n + 1)?;
    let table = table.split("\n\n").next()?;
    table
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .map(str::to_string)
}

#[test]
fn checkers_take_keepalived_timing_inherited_down_the_levels() {
    let i = import_text(
        "virtual_server 10.0.0.1 80 {\n delay_loop 10\n retry 2\n real_server 10.0.1.1 80 {\n  connect_timeout 2\n  TCP_CHECK {\n   retry 3\n  }\n  MISC_CHECK {\n   misc_path \"/bin/check 'a b' c\"\n  }\n  DNS_CHECK {\n   type aaaa\n  }\n  HTTP_GET {\n   url {\n    path /a\n   }\n   url {\n    path /b\n    status_code 200-299 404\n   }\n  }\n }\n}\n",
    );
    assert!(i.errors.is_empty(), "{:?}", i.errors);
    let check = |n, key| value(&i.toml, "[[service.real.check]]", n, key);
    // TCP: its own retry; the real server's timeout; the service's loop.
    assert_eq!(check(0, "interval").as_deref(), Some("10.0"));
    assert_eq!(check(0, "timeout").as_deref(), Some("2.0"));
    assert_eq!(check(0, "fall").as_deref(), Some("4"));
    assert_eq!(check(0, "retry_interval").as_deref(), Some("1.0"));
    // MISC: the inherited retry (MISC's own default is 0), a timeout of
    // delay_loop, and the program's words as keepalived splits them.
    assert_eq!(check(1, "fall").as_deref(), Some("3"));
    assert_eq!(check(1, "timeout").as_deref(), Some("10.0"));
    assert_eq!(check(1, "program").as_deref(), Some("\"/bin/check\""));
    assert_eq!(check(1, "args").as_deref(), Some("[\"a b\", \"c\"]"));
    // DNS: delay_before_retry defaults to delay_loop.
    assert_eq!(check(2, "query_type").as_deref(), Some("\"AAAA\""));
    assert_eq!(check(2, "retry_interval").as_deref(), Some("10.0"));
    // HTTP_GET: one check per url, 3 s between retries.
    assert_eq!(check(3, "path").as_deref(), Some("\"/a\""));
    assert_eq!(check(4, "path").as_deref(), Some("\"/b\""));
    assert_eq!(check(4, "status").as_deref(), Some("[\"200-299\", 404]"));
    assert_eq!(check(4, "retry_interval").as_deref(), Some("3.0"));
    assert_eq!(check(5, "path"), None);
}

#[test]
fn defaults_are_keepalived_s_where_ipvsadm_s_differ() {
    let i = import_text(
        "virtual_server 10.0.0.1 80 {\n persistence_timeout\n real_server 10.0.1.1 {\n  TCP_CHECK {\n  }\n }\n}\n",
    );
    assert!(i.errors.is_empty(), "{:?}", i.errors);
    let svc = |key| value(&i.toml, "[[service]]", 0, key);
    let real = |key| value(&i.toml, "[[service.real]]", 0, key);
    let check = |key| value(&i.toml, "[[service.real.check]]", 0, key);
    assert_eq!(svc("protocol").as_deref(), Some("\"tcp\""));
    // No lvs_sched: IPVS's default (wlc), which our TOML's default is too.
    assert_eq!(svc("scheduler"), None);
    assert_eq!(svc("persistent").as_deref(), Some("360"));
    // keepalived's method default is NAT (ipvsadm's is DR); the port the
    // service's.
    assert_eq!(real("method").as_deref(), Some("\"nat\""));
    assert_eq!(real("address").as_deref(), Some("\"10.0.1.1:80\""));
    assert_eq!(check("interval").as_deref(), Some("60.0"));
    assert_eq!(check("timeout").as_deref(), Some("5.0"));
    assert_eq!(check("fall").as_deref(), Some("2"));
    assert_eq!(check("start"), None);
    let commands = config::parse(&i.toml, "k.toml").unwrap();
    assert_eq!(commands.len(), 3, "{commands:?}");
}

#[test]
fn a_group_expands_to_one_service_per_address_with_the_same_servers() {
    let i = import_text(
        "virtual_server_group web {\n 10.0.0.1-3 80\n 10.0.1.0/31 8080\n ae00::2-3 80\n}\nvirtual_server group web {\n lb_algo rr\n real_server 10.0.9.1 {\n }\n real_server 10.0.9.2 81 {\n }\n}\n",
    );
    assert!(i.errors.is_empty(), "{:?}", i.errors);
    let addresses: Vec<String> = (0..7)
        .filter_map(|n| value(&i.toml, "[[service]]", n, "address"))
        .collect();
    assert_eq!(
        addresses,
        [
            "\"10.0.0.1:80\"",
            "\"10.0.0.2:80\"",
            "\"10.0.0.3:80\"",
            "\"10.0.1.0:8080\"",
            "\"10.0.1.1:8080\"",
            "\"[ae00::2]:80\"",
            "\"[ae00::3]:80\""
        ]
    );
    // A real server with no port takes each member's.
    let reals: Vec<String> = (0..14)
        .filter_map(|n| value(&i.toml, "[[service.real]]", n, "address"))
        .collect();
    assert_eq!(reals[6], "\"10.0.9.1:8080\"");
    assert_eq!(reals[7], "\"10.0.9.2:81\"");
    // The IPv6 members with IPv4 servers are refused by the model, at
    // the virtual_server's line.
    let e = config::parse(&i.toml, "k.toml").unwrap_err();
    let ConfigError::Invalid { line, .. } = e else {
        panic!("{e}")
    };
    assert_eq!(i.origin(line).map(|at| at.line), Some(8), "{e}");
}

#[test]
fn firewall_marks_and_silent_changes_are_errors_and_the_rest_still_imports() {
    let i = import_text(
        "virtual_server fwmark 1 {\n real_server 10.0.1.1 80 {\n }\n}\nvirtual_server 10.0.0.1 80 {\n ops\n real_server 10.0.1.1 80 {\n  notify_down /bin/x\n }\n}\nvirtual_server 10.0.0.2 80 {\n lb_algo rr\n real_server 10.0.1.2 80 {\n  MISC_CHECK {\n   misc_path /bin/x\n   user nobody\n  }\n }\n}\nvirtual_server 10.0.0.3 80 {\n snmp_name web\n frobnicate\n}\nvirtual_server 10.0.0.4 80 {\n lb_algo sh\n sh-port\n}\n",
    );
    let lines: Vec<usize> = i.errors.iter().map(|e| e.at.line).collect();
    assert_eq!(lines, [1, 6, 8, 16, 22], "{:#?}", i.errors);
    assert!(i.errors[0]
        .message
        .contains("netfilter marks a packet after XDP"));
    assert!(i.errors[0].message.contains("port-0 service"));
    assert!(i.errors[4].message.contains("unknown keyword `frobnicate`"));
    assert_eq!(i.warnings.len(), 1);
    assert_eq!(i.warnings[0].at.line, 21);
    // Only the last service converts.
    assert_eq!(
        value(&i.toml, "[[service]]", 0, "address").as_deref(),
        Some("\"10.0.0.4:80\"")
    );
    assert_eq!(
        value(&i.toml, "[[service]]", 0, "sched_flags").as_deref(),
        Some("[\"sh-port\"]")
    );
    assert_eq!(value(&i.toml, "[[service]]", 1, "address"), None);
}

#[test]
fn ssl_get_sends_the_virtual_host_as_sni_when_asked() {
    let i = import_text(
        "virtual_server 10.0.0.1 443 {\n virtualhost www.example.com\n real_server 10.0.1.1 443 {\n  SSL_GET {\n   enable_sni\n   url {\n    path /\n    digest ABCDEF0123456789abcdef0123456789\n   }\n   url {\n    path /x\n    virtualhost other.example.com\n   }\n  }\n }\n}\n",
    );
    assert!(i.errors.is_empty(), "{:?}", i.errors);
    let check = |n, key| value(&i.toml, "[[service.real.check]]", n, key);
    assert_eq!(check(0, "tls").as_deref(), Some("true"));
    assert_eq!(check(0, "sni").as_deref(), Some("\"www.example.com\""));
    assert_eq!(check(0, "host").as_deref(), Some("\"www.example.com\""));
    assert_eq!(
        check(0, "digest").as_deref(),
        Some("\"abcdef0123456789abcdef0123456789\"")
    );
    assert_eq!(check(1, "host").as_deref(), Some("\"other.example.com\""));
}

#[test]
fn a_unicast_vrrp_instance_becomes_the_pair() {
    let i = import_text(
        "vrrp_sync_group G {\n group {\n  VI_1\n  VI_2\n }\n}\nvrrp_instance VI_1 {\n state BACKUP\n interface eth0\n virtual_router_id 51\n priority 150\n advert_int 1\n unicast_src_ip 10.1.0.1\n unicast_peer {\n  10.1.0.2\n }\n authentication {\n  auth_type PASS\n  auth_pass a-long-enough-secret\n }\n virtual_ipaddress {\n  198.18.0.10/24 dev eth1 label eth1:0\n  198.18.0.11\n }\n}\nvrrp_instance VI_2 {\n interface eth0\n priority 150\n unicast_src_ip 10.1.0.1\n unicast_peer {\n  10.1.0.2\n }\n authentication {\n  auth_type PASS\n  auth_pass a-long-enough-secret\n }\n virtual_ipaddress {\n  2001:db8::10/64\n }\n}\n",
    );
    assert!(i.errors.is_empty(), "{:?}", i.errors);
    let ha = config::parse_ha(&i.toml, "k.toml").unwrap().unwrap();
    assert_eq!(ha.priority, 150);
    assert!(ha.preempt, "keepalived preempts unless told nopreempt");
    assert_eq!(ha.key, b"a-long-enough-secret");
    assert_eq!(ha.interval_ms, 1000);
    // keepalived's Master_Down_Interval: 3 adverts + (256 - 150)/256 s.
    assert_eq!(ha.dead_ms, 3414);
    assert_eq!(ha.links.len(), 1);
    assert_eq!(
        (
            ha.links[0].iface.as_str(),
            ha.links[0].local.to_string(),
            ha.links[0].peer.to_string()
        ),
        ("eth0", "10.1.0.1".into(), "10.1.0.2".into())
    );
    let addresses: Vec<String> = ha.addresses.iter().map(ToString::to_string).collect();
    assert_eq!(
        addresses,
        [
            "198.18.0.10/24 dev eth1",
            "198.18.0.11/32 dev eth0",
            "2001:db8::10/64 dev eth0"
        ]
    );
}

#[test]
fn vrrp_instances_that_disagree_or_cannot_be_honoured_are_named() {
    let instance = |name: &str, priority: u32, pass: &str| {
        format!("vrrp_instance {name} {{\n interface eth0\n priority {priority}\n unicast_src_ip 10.1.0.1\n unicast_peer {{\n  10.1.0.2\n }}\n authentication {{\n  auth_pass {pass}\n }}\n virtual_ipaddress {{\n  198.18.0.10\n }}\n}}\n")
    };
    let i = import_text(
        &(instance("A", 100, "a-long-enough-secret")
            + &instance("B", 50, "a-long-enough-secret")
            + &instance("C", 100, "1111")),
    );
    let messages: Vec<(usize, &str)> = i
        .errors
        .iter()
        .map(|e| (e.at.line, e.message.as_str()))
        .collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert_eq!(messages[0].0, 15);
    assert!(
        messages[0].1.contains("priority 50, where A has 100"),
        "{}",
        messages[0].1
    );
    assert_eq!(messages[1].0, 37);
    assert!(
        messages[1].1.contains("`auth_pass` has 4 bytes"),
        "{}",
        messages[1].1
    );
    let i = import_text("vrrp_instance M {\n interface eth0\n track_script {\n  chk\n }\n}\n");
    let lines: Vec<usize> = i.errors.iter().map(|e| e.at.line).collect();
    assert_eq!(lines, [3, 1], "{:#?}", i.errors);
    assert!(i.errors[1].message.contains("unicast"), "{}", i.errors[1]);
}

/// A rule of our TOML that keepalived's file breaks is named at the
/// keepalived line, through `Source::load` (what lvsd runs).
#[test]
fn errors_our_rules_find_name_the_keepalived_line() {
    let dir = std::env::temp_dir().join(format!("lvs-kload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keepalived.conf");
    std::fs::write(
        &path,
        "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n  weight 2\n }\n real_server 10.0.1.1 80 {\n  weight 3\n }\n}\n",
    )
    .unwrap();
    let e = Source::Keepalived(path.clone()).load().unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{}:5: ", path.display())),
        "{text}"
    );
    std::fs::write(&path, "virtual_server 10.0.0.1 80 {\n lb_kind DR\n real_server 10.0.1.1 80 {\n  weight 2\n }\n}\n").unwrap();
    let loaded = Source::Keepalived(path.clone()).load().unwrap();
    assert_eq!(loaded.commands.len(), 2);
    assert!(loaded.ha.is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn vrrp(body: &str) -> String {
    format!("vrrp_instance VI {{\n interface eth0\n unicast_src_ip 10.1.0.1\n unicast_peer {{\n  10.1.0.2\n }}\n authentication {{\n  auth_pass a-long-enough-secret\n }}\n virtual_ipaddress {{\n  198.18.0.10\n }}\n{body}}}\n")
}

/// keepalived's VRRP defaults: a MASTER without a priority owns the
/// addresses (255) and preempts whatever `nopreempt` says; version 2
/// advertises in whole seconds and skews by (256 - priority)/256 s,
/// version 3 by that share of an advert.
#[test]
fn vrrp_priority_preemption_and_timing_follow_keepalived() {
    let ha = |text: &str| {
        let i = import_text(text);
        assert!(i.errors.is_empty(), "{:?}", i.errors);
        (
            config::parse_ha(&i.toml, "k.toml").unwrap().unwrap(),
            i.warnings,
        )
    };
    let (h, warnings) = ha(&vrrp(" state MASTER\n nopreempt\n"));
    assert_eq!((h.priority, h.preempt), (255, true));
    assert!(
        warnings
            .iter()
            .any(|w| w.message.contains("`nopreempt` ignored")),
        "{warnings:?}"
    );
    let (h, _) = ha(&vrrp(" state BACKUP\n nopreempt\n"));
    assert_eq!((h.priority, h.preempt), (100, false));
    // Version 2 (the default): 0.3 s rounds to 1 s; dead = 3 + 156/256 s.
    let (h, warnings) = ha(&vrrp(" advert_int 0.3\n"));
    assert_eq!((h.interval_ms, h.dead_ms), (1000, 3609));
    assert!(
        warnings.iter().any(|w| w.message.contains("version 2")),
        "{warnings:?}"
    );
    let (h, _) = ha(&format!(
        "global_defs {{\n vrrp_version 3\n}}\n{}",
        vrrp(" advert_int 0.1\n priority 200\n")
    ));
    assert_eq!((h.interval_ms, h.dead_ms), (100, 322));
}

#[test]
fn keepalived_makes_port_0_and_granular_services_persistent() {
    let i = import_text("virtual_server 10.0.0.1 {\n lb_kind DR\n real_server 10.0.1.1 {\n }\n}\nvirtual_server 10.0.0.2 80 {\n persistence_granularity 255.255.255.0\n real_server 10.0.1.1 80 {\n }\n}\n");
    assert!(i.errors.is_empty(), "{:?}", i.errors);
    assert_eq!(
        value(&i.toml, "[[service]]", 0, "persistent").as_deref(),
        Some("360")
    );
    assert_eq!(
        value(&i.toml, "[[service]]", 1, "persistent").as_deref(),
        Some("360")
    );
    assert_eq!(i.warnings.len(), 2, "{:?}", i.warnings);
    config::parse(&i.toml, "k.toml").unwrap();
}

#[test]
fn sni_is_sent_only_with_enable_sni_and_never_from_the_real_server() {
    let get = |checker: &str, url: &str| {
        let i = import_text(&format!(
            "virtual_server 10.0.0.1 443 {{\n virtualhost vs.example\n real_server 10.0.1.1 443 {{\n  virtualhost rs.example\n  SSL_GET {{\n{checker}   url {{\n    path /\n{url}   }}\n  }}\n }}\n}}\n"
        ));
        assert!(i.errors.is_empty(), "{:?}", i.errors);
        (
            value(&i.toml, "[[service.real.check]]", 0, "sni"),
            value(&i.toml, "[[service.real.check]]", 0, "host"),
        )
    };
    assert_eq!(get("", ""), (None, Some("\"rs.example\"".into())));
    assert_eq!(
        get("   enable_sni\n", "").0.as_deref(),
        Some("\"vs.example\"")
    );
    assert_eq!(
        get("   enable_sni\n   virtualhost c.example\n", "")
            .0
            .as_deref(),
        Some("\"c.example\"")
    );
    assert_eq!(
        get("   enable_sni\n", "    virtualhost u.example\n")
            .0
            .as_deref(),
        Some("\"u.example\"")
    );
    assert_eq!(
        get(
            "   enable_sni\n   sni_name n.example\n",
            "    virtualhost u.example\n"
        )
        .0
        .as_deref(),
        Some("\"n.example\"")
    );
    assert_eq!(get("   sni_name n.example\n", "").0, None);
}

#[test]
fn values_our_toml_refuses_are_named_at_the_keepalived_line() {
    let i = import_text(
        "virtual_server 10.0.0.1 80 {\n retry 4294967295\n real_server 10.0.1.1 80 {\n }\n}\n",
    );
    assert_eq!(i.errors.len(), 1);
    assert_eq!(i.errors[0].at.line, 2);
    let i = import_text("global_defs {\n script_user nobody\n}\n");
    assert_eq!(i.errors.len(), 1);
    let dir = std::env::temp_dir().join(format!("lvs-kparse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keepalived.conf");
    std::fs::write(&path, "virtual_server 10.0.0.1 53 {\n protocol UDP\n real_server 10.0.1.1 53 {\n  UDP_CHECK {\n   require_reply 00\n   min_reply_length 70000\n  }\n }\n}\n").unwrap();
    let e = Source::Keepalived(path.clone())
        .load()
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&format!("{}:6: ", path.display())), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
