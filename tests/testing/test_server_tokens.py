"""The server's token count: ceil(utf-8 bytes / 4) per prompt string, + 4 per message."""

from __future__ import annotations

from typing import Any

import pytest

from batchor.testing import count_request_tokens


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        ({"model": "m", "input": "abcd"}, 1),
        ({"model": "m", "input": "abcde"}, 2),
        ({"model": "m", "input": ""}, 0),
        ({"model": "m", "input": "é" * 2}, 1),  # 4 bytes
        ({"model": "m", "input": "€"}, 1),  # 3 bytes
        ({"model": "m", "input": "x" * 9, "instructions": "y" * 8}, 3 + 2),
        ({"model": "m", "input": [{"role": "user", "content": "abcd"}]}, 4 + 1),
        (
            {
                "model": "m",
                "input": [
                    {"role": "system", "content": "x" * 5},
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "y" * 8},
                            {"type": "input_image", "image_url": "https://example.com/a.png"},
                        ],
                    },
                ],
            },
            4 + 2 + 4 + 2,
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "abcd"}]},
                    {"role": "assistant", "content": None},
                ],
            },
            (4 + 3) + (4 + 1) + 4,
        ),
        ({"model": "m", "input": ["abcd", "abcdefgh"]}, 1 + 2),
        ({"model": "m", "input": [1, 2, 3]}, 3),
        ({"model": "m", "input": [[1, 2], [3]]}, 3),
        ({"model": "m", "tools": [{"description": "x" * 100}]}, 0),
    ],
)
def test_count_request_tokens(body: dict[str, Any], tokens: int) -> None:
    assert count_request_tokens(body) == tokens
