"""Judges: the deterministic matchers, and the LLM judge against a local fake server."""

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vlmscope.judge import (ExactJudge, JudgeError, LLMJudge, Vocabulary, VocabularyJudge, f1,
                            singular, words)

TOKEN = "secret-token"
NOUNS = ("cats", "cat", "dog", "table", "people")


# ------------------------------------------------------------ deterministic
def test_whole_words_only():
    v = Vocabulary()
    assert v.objects("the location of the car") == {"car"}  # "cat" is not in "location"
    assert not v.mentions("a scattered concatenation", "cat")
    assert "yes" not in words("her eyes are blue")  # "yes" is not in "eyes"
    yes = Vocabulary({"yes": ("yes",)})
    assert yes.objects("her eyes are blue") == set() and yes.objects("Yes.") == {"yes"}


def test_plurals_are_folded():
    assert [singular(w) for w in ("dogs", "knives", "people", "buses", "benches", "glass")] == \
        ["dog", "knife", "person", "bus", "bench", "glass"]
    assert Vocabulary().objects("two dogs, three knives and some people") == \
        {"dog", "knife", "person"}
    # "-ses": horses and suitcases lose only the "s", glasses "es"
    assert Vocabulary().objects("horses, buses, suitcases, neckties, tvs and wine glasses") == \
        {"horse", "bus", "suitcase", "tie", "tv", "wine glass"}


def test_synonyms_and_longest_phrase():
    v = Vocabulary()
    assert v.objects("a puppy asleep on the sofa") == {"dog", "couch"}
    assert v.objects("a hot dog next to a cell phone") == {"hot dog", "cell phone"}  # not "dog"
    assert v.mentions("A Kitten!", "cat")


def test_f1_and_deterministic_judges():
    assert f1(set(), set())["f1"] == 1.0
    r = VocabularyJudge().compare("a dog and two cats", "a cat on a sofa")
    assert (r["precision"], r["recall"], r["f1"], r["tp"]) == (0.5, 0.5, 0.5, 1)
    e = ExactJudge().compare("a red circle at top left .",
                             "a red circle at top left , a blue square at middle center .")
    assert (e["precision"], e["recall"]) == (1.0, 0.5)


def test_identity_judge_counts_shapes_and_ignores_colour_and_place():
    from vlmscope.judge import IdentityJudge, paper_judge

    ref = "a red circle at top left , a blue circle at bottom right , a green square at middle center ."
    moved = "a yellow circle at middle left , a red triangle at top center ."
    assert IdentityJudge().objects(ref) == {"circle", "square"}  # two circles: one identity
    r = IdentityJudge().compare(moved, ref)  # by hand: {circle, triangle} vs {circle, square}
    assert (r["tp"], r["fp"], r["fn"], r["precision"], r["recall"]) == (1, 1, 1, 0.5, 0.5)
    assert ExactJudge().compare(moved, ref)["tp"] == 0  # the stricter rule finds nothing
    assert IdentityJudge().compare("nothing here", ref)["f1"] == 0.0
    assert isinstance(paper_judge(synthetic=True), IdentityJudge)
    assert isinstance(paper_judge(synthetic=False), VocabularyJudge)


# ---------------------------------------------------------- fake LLM server
class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, {"error": {"message": "invalid api key"}})
        if srv.mode == "error":
            return self._send(500, {"error": {"message": "model crashed"}})
        if srv.mode == "slow":
            time.sleep(1.0)
        if srv.mode == "garbage":
            return self._send(200, b"<html>not json</html>")
        text = body["messages"][-1]["content"]
        found = [w for w in re.findall(r"[a-z]+", text.lower()) if w in NOUNS]
        content = {"ok": json.dumps({"objects": found}),
                   "fenced": "```json\n" + json.dumps({"objects": found}) + "\n```",
                   "prose": "I think there is a cat.",
                   "slow": json.dumps({"objects": found})}[srv.mode]
        self._send(200, {"id": "x", "object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}]})

    def _send(self, code, payload):
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)  # port 0: a free port
    srv.daemon_threads = True
    srv.seen, srv.mode = [], "ok"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.base_url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    yield srv
    srv.shutdown()
    srv.server_close()


def _judge(server, **kw):
    return LLMJudge(server.base_url, "fake-judge", **{"api_key": TOKEN, **kw})


def test_request_shape_and_parsing(server):
    judge = _judge(server)
    assert judge.objects("Two cats under a table.") == {"cat", "table"}  # plural folded
    (req,) = server.seen
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert req["headers"]["Content-Type"] == "application/json"
    body = req["body"]
    assert body["model"] == "fake-judge" and body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "Two cats under a table." in body["messages"][1]["content"]
    assert '"objects"' in body["messages"][0]["content"]
    assert TOKEN not in repr(judge)


def test_replies_are_cached_per_text(server):
    judge = _judge(server)
    first = judge.objects("a dog and some people")
    assert judge.objects("a dog and some people") == first == {"dog", "person"}
    assert len(server.seen) == 1 and judge.requests == 1  # the second call asked nothing
    r = judge.compare("a dog and two cats", "a dog and some people")
    assert (r["precision"], r["recall"], r["tp"]) == (0.5, 0.5, 1)
    assert len(server.seen) == 2  # only the new text was sent


def test_code_fenced_json_is_read(server):
    server.mode = "fenced"
    assert _judge(server).objects("a cat on a table") == {"cat", "table"}


def test_key_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("VLMSCOPE_JUDGE_API_KEY", TOKEN)
    assert LLMJudge(server.base_url, "fake-judge").objects("a dog") == {"dog"}


def test_wrong_token_is_a_clear_error(server):
    with pytest.raises(JudgeError, match=r"HTTP 401 \(check the API key") as err:
        _judge(server, api_key="wrong-token").objects("a dog")
    assert "wrong-token" not in str(err.value)


def test_server_error_is_a_clear_error(server):
    server.mode = "error"
    with pytest.raises(JudgeError, match="HTTP 500.*model crashed"):
        _judge(server).objects("a dog")


@pytest.mark.parametrize("mode, match", [("garbage", "not a chat completion"),
                                         ("prose", r'expected JSON \{"objects"')])
def test_unparsable_reply_is_a_clear_error(server, mode, match):
    server.mode = mode
    judge = _judge(server)
    with pytest.raises(JudgeError, match=f"unparsable reply.*{match}"):
        judge.objects("a dog")
    assert "a dog" not in judge._cache  # a failure is not cached


def test_unreachable_and_slow_servers(server):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(JudgeError, match="could not reach"):
        LLMJudge(f"http://127.0.0.1:{port}/v1", "m", timeout=2).objects("a dog")
    server.mode = "slow"
    with pytest.raises(JudgeError, match="could not reach.*0.2s"):
        _judge(server, timeout=0.2).objects("a dog")


def test_configuration_is_checked():
    with pytest.raises(ValueError, match="http"):
        LLMJudge("127.0.0.1:8000", "m")
    with pytest.raises(ValueError, match="model"):
        LLMJudge("http://127.0.0.1:8000/v1", "")


def test_knockout_sweep_takes_the_llm_judge(server, tiny):
    from vlmscope.datasets.synthetic import World
    from vlmscope.knockout import SweepConfig, knockout_sweep

    judge = _judge(server)
    df = knockout_sweep(tiny, World().scene(seed=4).image,
                        SweepConfig(configs=("img->gen",), starts=(0,), max_new_tokens=2),
                        judge=judge)
    assert len(df) == 1 and {"precision", "recall", "f1"} <= set(df.columns)
    assert judge.requests == len(set(df.text) | set(df.baseline))
