"""Marts: profiles, RFM, CLV and personalization payloads, plain Python over warehouse SQL."""
