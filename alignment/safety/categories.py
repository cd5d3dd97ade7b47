"""The safety categories shared by the demo world, the safety filter and the labeling app.

The first eight follow the OpenAI moderation taxonomy (Markov et al., 2022), whose evaluation set uses
the short codes in :data:`MODERATION_CODES`; ``weapons`` and ``cybercrime`` extend it for red-teaming.
"""

CATEGORIES: tuple[str, ...] = (
    "sexual",
    "hate",
    "violence",
    "harassment",
    "self-harm",
    "sexual/minors",
    "hate/threatening",
    "violence/graphic",
    "weapons",
    "cybercrime",
)

#: OpenAI-moderation JSONL keys -> category names.
MODERATION_CODES: dict[str, str] = {
    "S": "sexual",
    "H": "hate",
    "V": "violence",
    "HR": "harassment",
    "SH": "self-harm",
    "S3": "sexual/minors",
    "H2": "hate/threatening",
    "V2": "violence/graphic",
}
