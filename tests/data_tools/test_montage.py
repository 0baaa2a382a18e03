from __future__ import annotations

from PIL import Image

from data_tools.montage import main


def test_montage_shows_one_tile_per_class(raw_release, tmp_path, capsys):
    src, _ = raw_release
    out = tmp_path / "classes.png"
    main(["--src", str(src), "--out", str(out)])
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as png:
        assert png.width >= 5 * 150  # five classes side by side
