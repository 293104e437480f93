"""The Nexa dashboard: `streamlit run nexa_ui/app.py` (or `make up`). Reads the lake named by NEXA_LAKE_ROOT."""

from __future__ import annotations

import streamlit as st

from nexa_ui import common, data

st.set_page_config(page_title="Nexa", page_icon=":material/school:", layout="wide")

pages = {
    "Results": [
        st.Page(common.LEADERBOARD, title="Leaderboard", icon=":material/leaderboard:", url_path="leaderboard",
                default=True),
        st.Page(common.CELLS, title="Cells", icon=":material/grid_view:", url_path="cells"),
    ],
    "Data and spend": [
        st.Page(common.INSPECTOR, title="Data inspector", icon=":material/search:", url_path="inspector"),
        st.Page(common.TRAINING, title="Training", icon=":material/model_training:", url_path="training"),
        st.Page(common.COSTS, title="Costs", icon=":material/payments:", url_path="costs"),
        st.Page(common.SQL, title="SQL", icon=":material/terminal:", url_path="sql"),
    ],
}
page = st.navigation(pages)
st.sidebar.caption(f"Lake: `{data.lake_root()}`")
page.run()
