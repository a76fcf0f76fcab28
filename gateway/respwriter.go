package gateway

func success(status int) bool { return status >= 200 && status < 300 }
