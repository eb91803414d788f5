//! What the Thrift server does with bytes that are not a valid call.

use std::time::Duration;

use contract_tests::Stack;
use rpc::music::base::ErrCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Whether the peer closes (or resets) the connection within a few seconds.
async fn closed(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    };
    // Generous: on a loaded machine the Go service (which this suite also runs against) once
    // took more than 5 s to drop the connection.
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or(false)
}

#[tokio::test]
async fn a_garbage_frame_closes_that_connection_only() {
    let stack = Stack::start().await;
    let mut conn = TcpStream::connect(stack.service.addr).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nthis is not thrift at all")
        .await
        .unwrap();
    assert!(
        closed(&mut conn).await,
        "the server closes a connection that speaks garbage"
    );
    assert_eq!(
        stack.create("hal", "secret1").await.code,
        i64::from(ErrCode::SUCCESS),
        "other callers are served"
    );
}

#[tokio::test]
async fn an_oversized_frame_is_refused() {
    let stack = Stack::start().await;
    let mut conn = TcpStream::connect(stack.service.addr).await.unwrap();
    // A framed-transport header announcing 64 MiB (volo-thrift's limit is 16 MiB), then a
    // binary-protocol message start so the framing is recognised.
    let mut frame = (64u32 << 20).to_be_bytes().to_vec();
    frame.extend_from_slice(&[0x80, 0x01, 0x00, 0x01]);
    conn.write_all(&frame).await.unwrap();
    assert!(
        closed(&mut conn).await,
        "the server refuses the frame instead of waiting for 64 MiB"
    );
    assert_eq!(
        stack.create("ivy", "secret1").await.code,
        i64::from(ErrCode::SUCCESS)
    );
}
