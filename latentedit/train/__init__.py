"""Training loops. Import the trainer you need (``latentedit.train.stylegan2``); nothing heavy runs here."""
