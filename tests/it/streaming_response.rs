//! A predictor that returns starlette's `StreamingResponse`, as cortex 0.2x predictors could:
//! its body reaches the client (read whole by the replica), with its media type and headers.

use crate::harness::*;

#[test]
fn a_starlette_streaming_response_reaches_the_client() {
    let s = Server::start();
    let p = s.python_project(
        "rows",
        "RealtimeAPI",
        "from starlette.responses import StreamingResponse\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        def rows():\n            for i in range(payload['n']):\n                yield '%d,%d\\n' % (i, i * i)\n        return StreamingResponse(rows(), media_type='text/csv', headers={'X-Rows': str(payload['n'])})\n",
        "",
    );
    // From PyPI, as the project would list it.
    write(&p, "requirements.txt", "starlette\n");
    s.ok(&p, &["deploy"]);
    s.wait_status("rows", "live");
    let r = s.predict("rows", r#"{"n": 3}"#);
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"),
        "{headers:?}"
    );
    assert_eq!(headers["x-rows"], "3");
    assert_eq!(r.text().unwrap(), "0,0\n1,1\n2,4\n");
}
