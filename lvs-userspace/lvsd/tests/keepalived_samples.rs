//! keepalived's sample configurations through the importer and the
//! controller: the services list in `lvsadm -L -n` as `ipvsadm -L -n`
//! lists them on a keepalived director once its checkers have started
//! (each checker starts up unless `alpha` is set, so every real server is
//! in the table).

use lvs::controller::Controller;
use lvs_cli::ipvsadm::{format::list, ListOptions};
use lvs_datapath::fake::FakeDatapath;
use lvs_state::{config, keepalived};

fn listing(sample: &str) -> String {
    let path = format!("../state/tests/keepalived-samples/{sample}");
    let import = keepalived::import(std::path::Path::new(&path));
    let commands = config::parse(&import.toml, &path).unwrap();
    let mut c = Controller::new(FakeDatapath::default());
    c.apply(&commands).unwrap();
    list(&c.snapshot().unwrap(), &ListOptions::default())
}

const HEADER: &str = "IP Virtual Server version 1.2.1 (size=262144)\n\
Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

/// ipvsadm's columns, then lvs's health note (`up`) after them.
#[test]
fn keepalived_s_samples_list_as_ipvsadm_lists_them_under_keepalived() {
    for (sample, body) in [
        (
            "keepalived.conf.sample",
            "TCP  10.10.10.2:1358 rr persistent 50\n\
            \x20 -> 192.168.200.2:1358           Masq    1      0          0          up\n",
        ),
        (
            "keepalived.conf.etc",
            "TCP  10.10.10.2:1358 rr persistent 50\n\
            \x20 -> 192.168.200.2:1358           Masq    1      0          0          up\n\
            \x20 -> 192.168.200.3:1358           Masq    1      0          0          up\n\
            TCP  10.10.10.3:1358 rr persistent 50\n\
            \x20 -> 192.168.200.4:1358           Masq    1      0          0          up\n\
            \x20 -> 192.168.200.5:1358           Masq    1      0          0          up\n\
            TCP  192.168.200.100:443 rr persistent 50\n\
            \x20 -> 192.168.201.100:443          Masq    1      0          0          up\n",
        ),
        (
            "keepalived.conf.IPv6",
            "TCP  [ae00::1]:80 rr persistent 50\n\
            \x20 -> [ae00::10]:25                Masq    1      0          0          up\n",
        ),
        (
            "keepalived.conf.SMTP_CHECK",
            "TCP  192.168.200.100:25 rr\n\
            \x20 -> 172.16.1.10:25               Masq    1      0          0          up\n\
            \x20 -> 172.16.1.11:25               Masq    1      0          0          up\n\
            \x20 -> 172.16.1.12:25               Masq    1      0          0          up\n",
        ),
        (
            "keepalived.conf.UDP_CHECK",
            "UDP  10.10.10.2:1358 rr persistent 50\n\
            \x20 -> 192.168.200.6:1358           Masq    1      0          0          up\n",
        ),
    ] {
        assert_eq!(listing(sample), format!("{HEADER}{body}"), "{sample}");
    }
}

/// A `virtual_server group` is one service per member address, each with
/// the group's real servers (the sample's fwmark members are refused).
#[test]
fn a_virtual_server_group_lists_one_service_per_member() {
    let listing = listing("keepalived.conf.virtual_server_group");
    let services: Vec<&str> = listing.lines().filter(|l| l.starts_with("TCP")).collect();
    let mut expected = vec![
        "TCP  10.0.0.1:8080 rr persistent 50".to_string(),
        "TCP  10.0.0.2:80 rr persistent 50".to_string(),
        "TCP  192.168.200.1:1358 rr persistent 50".to_string(),
    ];
    expected.extend((3..=10).map(|n| format!("TCP  192.168.200.{n}:80 rr persistent 50")));
    assert_eq!(services, expected);
    assert_eq!(
        listing
            .lines()
            .filter(|l| l.contains("-> 192.168.200.2:1358"))
            .count(),
        11
    );
}
