"""Download buttons that hand any table over as CSV, Excel or Parquet."""

from __future__ import annotations

import io

import pandas as pd
import streamlit as st

FORMATS = ("CSV", "XLSX", "Parquet")
MIME = {
    "CSV": "text/csv",
    "XLSX": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "Parquet": "application/vnd.apache.parquet",
}


def as_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "CSV":
        out.write(frame.to_csv(index=False).encode())
    elif fmt == "XLSX":
        # Excel has no time zones: local times go in as they are shown.
        plain = frame.copy()
        for col in plain.select_dtypes(include=["datetimetz"]).columns:
            plain[col] = plain[col].dt.tz_localize(None)
        # A cell that starts with "=" stays text: a customer named '=HYPERLINK(...)' is not a formula.
        options = {"strings_to_formulas": False, "strings_to_urls": False}
        with pd.ExcelWriter(out, engine="xlsxwriter", engine_kwargs={"options": options}) as xl:
            plain.to_excel(xl, index=False, sheet_name="report")
    else:
        frame.to_parquet(out, index=False)
    return out.getvalue()


def export_buttons(frame: pd.DataFrame, name: str, key: str) -> None:
    """Three buttons under a table; the file is built only from what the table shows."""
    if frame.empty:
        return
    cols = st.columns(len(FORMATS) + 3)
    for col, fmt in zip(cols, FORMATS, strict=False):
        col.download_button(
            fmt,
            data=as_bytes(frame, fmt),
            file_name=f"{name}.{fmt.lower()}",
            mime=MIME[fmt],
            key=f"{key}_{fmt}",
            icon=":material/download:",
        )
