"""Small record factories for the identity tests."""

import numpy as np
import pandas as pd


def person(rid, first, last, email=None, phone=None, birth=None, street=None, city=None, postcode=None,
           source="crm", updated="2026-01-01T00:00:00Z", **extra):
    return {"record_id": rid, "source": source, "source_id": rid.split(":", 1)[-1], "first_name": first,
            "last_name": last, "email": email, "email_key": email, "phone": phone, "birth_date": birth, "street": street,
            "city": city, "postcode": postcode, "country": "GB", "updated_at": pd.Timestamp(updated),
            **extra}


def population(n: int, seed: int = 3) -> pd.DataFrame:
    """n distinct, well-separated people (different names, dates, addresses)."""
    rng = np.random.default_rng(seed)
    syl = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "be", "do", "fa", "gu", "hi", "jo", "pe", "so"]
    rows = []
    for i in range(n):
        first = "".join(rng.choice(syl, 3)).title()
        last = "".join(rng.choice(syl, 4)).title()
        rows.append(person(f"crm:{1000 + i}", first, last, email=f"{first}.{last}{i}@mail.com".lower(),
                           phone=f"+4477009{i:05d}", birth=f"19{50 + i % 50}-0{1 + i % 9}-1{i % 9}",
                           street=f"{i + 1} {''.join(rng.choice(syl, 3))} road", city="leeds",
                           postcode=f"LS{i % 20} {i % 9}AB"))
    return pd.DataFrame(rows)
