Console.WriteLine("Gan.Host");
