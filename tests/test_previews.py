"""--preview-images N holds out at most 10% of the photos (rounded down) and leaves at least one to
train on; when none can be held out, the previews show training photos and the run says so."""
import pytest

from microst.data import ImageFolder

from test_train import make_images


@pytest.mark.parametrize("photos, asked, held", [(5, 4, 0), (1, 4, 0), (10, 4, 1), (20, 4, 2), (123, 4, 4), (50, 0, 0)])
def test_at_most_ten_percent_are_held_out(tmp_path, photos, asked, held):
    _, data = make_images(tmp_path, n=photos)
    folder = ImageFolder(str(data), 32, hold_out=asked)
    assert len(folder.held_out) == held and len(folder) == photos - held >= 1
    assert not set(folder.held_out) & set(folder.files)
    assert folder.previews_from_training == (asked > 0 and held == 0)
    assert len(folder.previews(16)) == (held or max(1, min(asked, photos)))


def test_the_run_says_when_previews_show_training_photos(tmp_path):
    from microst.train import resolve_options, train
    from test_train import tiny_vgg
    style, data = make_images(tmp_path, n=5)
    opts, _ = resolve_options(["--style", str(style), "--data", str(data), "--out", str(tmp_path / "run"),
                               "--device", "cpu", "--no-progress", "--image-size", "32", "--batch-size", "1",
                               "--width", "0.125", "--preview-images", "4", "--iterations", "1"])
    messages = []
    train(opts, vgg=tiny_vgg(), log=messages.append)
    assert any("5 training images" in m and "0 held out" in m for m in messages), messages
    assert any("too few to hold 4 out" in m and "previews show training photos" in m for m in messages), messages
