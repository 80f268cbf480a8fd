//! `/api/dmesg` and `/api/dmesg.json` over the kernel log ring.

use super::*;

#[test]
fn dmesg_text_and_json_from_since() {
    run(DEFAULT, |t| {
        assert_eq!(t.get("/api/dmesg").text(), "");
        let system = t.api.system;
        system.printk(crate::api::dmesg::LogLevel::Info, "first line");
        system.printk(crate::api::dmesg::LogLevel::Warning, "second line");
        system.printk(crate::api::dmesg::LogLevel::Err, "third line");
        let r = t.get("/api/dmesg");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some(crate::server::response::CONTENT_TYPE_TEXT)
        );
        assert_eq!(
            r.text(),
            "[    1.234000] first line\n[    1.234000] second line\n[    1.234000] third line\n"
        );
        assert_eq!(
            t.get("/api/dmesg?since=2").text(),
            "[    1.234000] third line\n"
        );
        let j = t.json("/api/dmesg.json?since=1");
        assert_eq!(
            j,
            json!({"records":[
                {"seq":1,"ts_us":1_234_000,"level":4,"text":"second line"},
                {"seq":2,"ts_us":1_234_000,"level":3,"text":"third line"}
            ]})
        );
        assert_eq!(t.json("/api/dmesg.json?since=3"), json!({"records":[]}));
        assert_eq!(error(&t.get("/api/dmesg?since=-1")).0, 400);
    });
}
