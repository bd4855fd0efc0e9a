"""A deterministic generator of a realistic hospital's EMR access logs with planted violations.

`generate.generate(out, seed, days, size)` builds the hospital (`hospital`), its duty roster
(`roster`), patients, encounters and care relations (`care`), the legitimate accesses
(`legit`), the planted violations with their ground truth (`violations`), and writes the
canonical CSVs and optional vendor layouts (`writers`). Same seed, same bytes.
"""
