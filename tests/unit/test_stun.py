"""The STUN code of the ice_lite module against RFC 5769's test vectors."""

from rtpproxy_py.modules import stun

# RFC 5769 2.1: a binding request with USERNAME, short-term integrity and FINGERPRINT.
SAMPLE_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "802200105354554e207465737420636c69656e74"
    "002400046e0001ff"
    "80290008932ff9b151263b36"
    "000600096576746a3a68367659202020"
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004e57a3bcf")
PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"

# RFC 5769 2.2: the IPv4 response (XOR-MAPPED-ADDRESS 192.0.2.1:32853).
SAMPLE_IPV4_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000080001a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004c07d4c96")


def test_sample_request_parses_and_verifies():
    message = stun.parse(SAMPLE_REQUEST)
    assert message is not None and message.msg_type == stun.BINDING_REQUEST
    assert message.get(stun.USERNAME) == b"evtj:h6vY"
    assert message.get(stun.SOFTWARE) == b"STUN test client"
    assert message.fingerprint_ok is True
    assert message.integrity_ok(PASSWORD)
    assert not message.integrity_ok(b"wrong password")


def test_sample_response_rebuilt_byte_for_byte():
    parsed = stun.parse(SAMPLE_IPV4_RESPONSE)
    assert parsed.integrity_ok(PASSWORD) and parsed.fingerprint_ok
    address = stun.read_xor_address(parsed.get(stun.XOR_MAPPED_ADDRESS), parsed.transaction)
    assert address == ("192.0.2.1", 32853)
    built = stun.Message(stun.BINDING_SUCCESS, parsed.transaction)
    built.add(stun.SOFTWARE, b"test vector")
    built.add(stun.XOR_MAPPED_ADDRESS, stun.xor_address(address, parsed.transaction))
    assert built.encode(PASSWORD, pad=b" ") == SAMPLE_IPV4_RESPONSE


def test_request_built_like_the_vector_matches_it():
    message = stun.Message(stun.BINDING_REQUEST, bytes.fromhex("b7e7a701bc34d686fa87dfae"))
    message.add(stun.SOFTWARE, b"STUN test client")
    message.add(stun.PRIORITY, bytes.fromhex("6e0001ff"))
    message.add(stun.ICE_CONTROLLED, bytes.fromhex("932ff9b151263b36"))
    message.add(stun.USERNAME, b"evtj:h6vY")
    assert message.encode(PASSWORD, pad=b" ") == SAMPLE_REQUEST


def test_garbage_is_not_stun():
    assert stun.parse(b"\x80" + b"\0" * 30) is None
    assert stun.parse(SAMPLE_REQUEST[:-3]) is None
    assert not stun.is_stun(b"\x16\xfe\xfd" + b"\0" * 30)
