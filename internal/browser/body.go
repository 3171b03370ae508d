package browser

// maxBody bounds what is read of one response (the rest is left unread).
const maxBody = 4 << 20
