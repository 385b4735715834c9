#!/usr/bin/env python3
"""The official `openai` package talking to batchd over its HTTP Unix socket.

    pip install openai
    python3 examples/openai_socket.py [HTTP_SOCKET]

The socket defaults to http.sock beside batchd's default socket. The URL's host is never
looked up: httpx sends every request down the socket. Prints one JSON object with what each
call returned (the e2e tests read it).
"""

import json
import os
import sys

import openai

# The HTTP client library openai is built on: httpx2 from openai 3 on, httpx before. Its
# Client is what `http_client` takes, and its transport is what reaches a Unix socket.
try:
    import httpx2 as httpx
except ImportError:
    import httpx


def default_socket():
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "batchd", "http.sock")
    return os.path.join("/tmp", f"batchd-{os.geteuid()}", "http.sock")


def main():
    socket = sys.argv[1] if len(sys.argv) > 1 else default_socket()
    client = openai.OpenAI(
        base_url="http://batchd/v1",
        api_key="unused",  # the socket checks the caller's uid instead
        http_client=httpx.Client(transport=httpx.HTTPTransport(uds=socket)),
    )
    model = client.models.list().data[0].id
    prompt = "The capital of France is"
    # batchd's own parameters (ignore_eos, top_k, min_p) go in extra_body.
    greedy = dict(max_tokens=12, temperature=0, extra_body={"ignore_eos": True})

    completion = client.completions.create(model=model, prompt=prompt, **greedy)
    streamed = "".join(
        chunk.choices[0].text
        for chunk in client.completions.create(model=model, prompt=prompt, stream=True, **greedy)
        if chunk.choices
    )
    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], **greedy
    )
    # Log-probabilities: `logprobs=N` alternatives in completions; a flag plus
    # `top_logprobs=N` in chat.
    scored = client.completions.create(model=model, prompt=prompt, logprobs=3, **greedy)
    lp = scored.choices[0].logprobs
    chat_scored = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Hello"}],
        logprobs=True,
        top_logprobs=3,
        **greedy,
    )
    chat_lp = chat_scored.choices[0].logprobs.content
    try:
        client.completions.create(model="no-such-model", prompt=prompt, max_tokens=1)
        not_found = False
    except openai.NotFoundError:
        not_found = True

    print(json.dumps({
        "model": model,
        "completion": completion.choices[0].text,
        "completion_tokens": completion.usage.completion_tokens,
        "streamed": streamed,
        "chat": chat.choices[0].message.content,
        "not_found_raised": not_found,
        "logprobs": {
            "text": scored.choices[0].text,
            "tokens": lp.tokens,
            "token_logprobs": lp.token_logprobs,
            "top_logprobs": lp.top_logprobs,
            "text_offset": lp.text_offset,
            "chat_text": chat_scored.choices[0].message.content,
            "chat": [
                {"logprob": t.logprob, "top": [a.logprob for a in t.top_logprobs]}
                for t in chat_lp
            ],
        },
    }))


if __name__ == "__main__":
    main()
