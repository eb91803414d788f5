"""A standard Apache Thrift client (code from the Apache `thrift` compiler) calling UserService.

Usage: client.py GEN_PY_DIR HOST PORT TRANSPORT USERNAME
TRANSPORT is `framed` or `buffered`; the protocol is binary, as Kitex and Volo speak it.
Prints one JSON object with what each call answered.
"""
import json
import sys

gen_dir, host, port, transport_kind, username = sys.argv[1:6]
sys.path.insert(0, gen_dir)

from thrift.protocol import TBinaryProtocol  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402
from user import UserService  # noqa: E402
from user.ttypes import CreateUserRequest, GetUserRequest, LoginRequest  # noqa: E402

socket = TSocket.TSocket(host, int(port))
socket.setTimeout(5000)
if transport_kind == "framed":
    transport = TTransport.TFramedTransport(socket)
else:
    transport = TTransport.TBufferedTransport(socket)
client = UserService.Client(TBinaryProtocol.TBinaryProtocol(transport))
transport.open()
try:
    created = client.CreateUser(CreateUserRequest(username=username, password="interop secret"))
    login = client.Login(LoginRequest(username=username, password="interop secret"))
    user = client.GetUser(GetUserRequest(user_id=login.user_id))
    wrong = client.Login(LoginRequest(username=username, password="not the secret"))
finally:
    transport.close()

print(json.dumps({
    "create": [created.base_resp.status_code, created.user_id],
    "login": [login.base_resp.status_code, login.user_id],
    "get": [user.base_resp.status_code, user.user.username, user.user.user_id],
    "wrong_password": [wrong.base_resp.status_code, wrong.base_resp.status_message],
}))
