//! ipvsadm's save format through the controller: what `lvsadm -R` restores,
//! `lvsadm -S` writes back byte for byte, and a bad batch changes nothing.

use lvs::controller::Controller;
use lvs_cli::ipvsadm::{format::save, parse_restore};
use lvs_datapath::fake::FakeDatapath;
use lvs_state::model::Method;

/// A save file as ipvsadm 1.31 writes it (-m, -g and -i servers, the
/// tunnels' `--tun-type ipip`, persistence with a mask, a port-0
/// service, sh's flags and a raw flag), also used end to end.
const IPVSADM_131_SAVE: &str = include_str!("../../../tests/data/ipvsadm-1.31.save");

#[test]
fn an_ipvsadm_131_save_file_restores_and_saves_byte_for_byte() {
    let commands = parse_restore(IPVSADM_131_SAVE).unwrap();
    let mut c = Controller::new(FakeDatapath::default());
    c.apply(&commands).unwrap();
    let snap = c.snapshot().unwrap();
    assert_eq!(save(&snap), IPVSADM_131_SAVE);
    let udp = snap
        .services
        .iter()
        .find(|s| s.spec.id.vip.port == 53)
        .unwrap();
    assert!(udp.reals.iter().all(|r| r.spec.method == Method::Tunnel));
    // Restoring it again over itself is refused as a whole (the
    // services exist), and leaves everything as it was.
    assert!(c.apply(&commands).is_err());
    assert_eq!(save(&c.snapshot().unwrap()), IPVSADM_131_SAVE);
}

#[test]
fn a_bad_restore_line_changes_nothing() {
    let mut c = Controller::new(FakeDatapath::default());
    c.apply(&parse_restore(IPVSADM_131_SAVE).unwrap()).unwrap();
    let before = save(&c.snapshot().unwrap());
    // A line lvsd refuses (the server exists) after good ones: the
    // whole batch is refused.
    let batch = concat!(
        "-A -t 192.168.10.102:80 -s rr\n",
        "-a -t 192.168.10.102:80 -r 192.168.20.11:80 -m -w 1\n",
        "-a -t 192.168.10.100:80 -r 192.168.20.11:8080 -m -w 1\n",
    );
    let err = c.apply(&parse_restore(batch).unwrap()).unwrap_err();
    assert!(!err.to_string().is_empty());
    assert_eq!(save(&c.snapshot().unwrap()), before);
    // A line that does not parse: nothing reaches the controller.
    let err = parse_restore(&format!(
        "{batch}-a -u 192.168.10.100:53 -r 192.168.30.23:53 -i --tun-type gue --tun-port 6080\n"
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "restore line 4: option `--tun-type gue` is not yet supported"
    );
}
