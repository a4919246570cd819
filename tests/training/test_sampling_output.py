from training.services import clean_model_output


def test_model_output_loses_nul_and_control_characters_but_keeps_layout():
    assert clean_model_output("a\x00b\x07c\td\ne\r\n") == "abc\td\ne\r\n"
